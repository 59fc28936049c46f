package scan

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Sentinel errors, for callers that want to tell the cases apart.
var (
	// ErrNoI2C: there is no /dev/i2c-* at all.
	ErrNoI2C = errors.New("no I²C bus found: enable one with dtparam=i2c_arm=on in /boot/firmware/config.txt (or raspi-config → Interface Options → I2C) and reboot")
	// ErrNoOneWire: the kernel's 1-Wire bus is not there.
	ErrNoOneWire = errors.New("no 1-Wire bus found: enable it with dtoverlay=w1-gpio (GPIO4 by default) in /boot/firmware/config.txt and reboot")
	// ErrPermission: a bus exists but this user may not open it.
	ErrPermission = errors.New("permission denied: add the user to the i2c group (sudo adduser $USER i2c) and log in again; the outpost service user has it")
)

// First and last addresses probed, as i2cdetect does by default.
const (
	FirstAddr = 0x08
	LastAddr  = 0x77
)

// Options says where to look. The zero value scans the live system.
type Options struct {
	DevRoot string // "" means "/dev"
	SysRoot string // "" means "/sys"
	// open opens a bus; nil opens the Linux character device. Tests set it.
	open func(path string) (prober, error)
}

// Result is what a scan found.
type Result struct {
	Buses []Bus
	// I2CErr is ErrNoI2C when there is no bus.
	I2CErr  error
	OneWire []Probe
	W1Err   error // ErrNoOneWire when the w1 bus is absent
	w1Dir   string
	scanned int // buses scanned without error
}

// Bus is one I²C bus.
type Bus struct {
	Number  int
	Path    string // e.g. /dev/i2c-1
	Adapter string // the kernel's name for it, e.g. "bcm2835 (i2c@7e804000)"
	Found   []Device
	Err     error // the bus could not be scanned
}

// Device is an address that answered, or that a kernel driver holds.
type Device struct {
	Addr   uint16
	InUse  bool   // bound to a kernel driver (i2cdetect's UU); not probed
	Likely string // the chips usually found at this address
}

// Probe is a device on the 1-Wire bus.
type Probe struct {
	ID     string // e.g. 28-0316a2795bff
	Family string // e.g. "DS18B20 temperature probe"; "" if unknown
}

// status of one probed address.
type status int

const (
	absent status = iota
	present
	busy
)

// mode of probing, as i2cdetect's.
type mode int

const (
	quickWrite mode = iota
	readByte
)

// prober is an open I²C bus that can be probed.
type prober interface {
	probe(addr uint16, m mode) (status, error)
	canQuick() bool
	Close() error
}

// probeMode returns how i2cdetect probes addr by default.
func probeMode(addr uint16, quickOK bool) mode {
	if addr >= 0x30 && addr <= 0x37 || addr >= 0x50 && addr <= 0x5F || !quickOK {
		return readByte
	}
	return quickWrite
}

// Scan scans every I²C bus and the 1-Wire bus.
func Scan(opts Options) Result {
	dev, sys := opts.DevRoot, opts.SysRoot
	if dev == "" {
		dev = "/dev"
	}
	if sys == "" {
		sys = "/sys"
	}
	open := opts.open
	if open == nil {
		open = openDev
	}
	var r Result
	paths, _ := filepath.Glob(filepath.Join(dev, "i2c-*"))
	for _, p := range paths {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), "i2c-"))
		if err != nil {
			continue
		}
		b := Bus{Number: n, Path: p}
		if name, err := os.ReadFile(filepath.Join(sys, "class", "i2c-adapter", "i2c-"+strconv.Itoa(n), "name")); err == nil {
			b.Adapter = strings.TrimSpace(string(name))
		}
		b.Found, b.Err = scanBus(open, p)
		if b.Err == nil {
			r.scanned++
		}
		r.Buses = append(r.Buses, b)
	}
	slices.SortFunc(r.Buses, func(a, b Bus) int { return a.Number - b.Number })
	if len(r.Buses) == 0 {
		r.I2CErr = ErrNoI2C
	}
	r.w1Dir = filepath.Join(sys, "bus", "w1", "devices")
	r.OneWire, r.W1Err = scanOneWire(r.w1Dir)
	return r
}

func scanBus(open func(string) (prober, error), path string) ([]Device, error) {
	p, err := open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%s: %w", path, ErrPermission)
		}
		return nil, err
	}
	defer p.Close()
	quick := p.canQuick()
	var found []Device
	for a := uint16(FirstAddr); a <= LastAddr; a++ {
		s, err := p.probe(a, probeMode(a, quick))
		if err != nil {
			return found, fmt.Errorf("%s: address %#02x: %w", path, a, err)
		}
		if s != absent {
			found = append(found, Device{Addr: a, InUse: s == busy, Likely: Likely(a)})
		}
	}
	return found, nil
}

var w1Families = map[string]string{
	"28": "DS18B20 temperature probe",
	"10": "DS18S20 temperature probe",
	"22": "DS1822 temperature probe",
	"3b": "DS1825/MAX31850 temperature probe",
	"42": "DS28EA00 temperature probe",
	"26": "DS2438 battery monitor",
	"1d": "DS2423 counter",
	"29": "DS2408 8-channel switch",
}

func scanOneWire(dir string) ([]Probe, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNoOneWire
		}
		return nil, fmt.Errorf("1-Wire: %w", err)
	}
	var out []Probe
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "w1_bus_master") || len(name) < 4 || name[2] != '-' {
			continue
		}
		out = append(out, Probe{ID: name, Family: w1Families[strings.ToLower(name[:2])]})
	}
	return out, nil
}

// Likely names the chips usually found at an I²C address ("" if none is
// known). It is a guess: many chips share addresses.
func Likely(addr uint16) string {
	switch {
	case addr == 0x76:
		return "BME280/BMP280 (driver bme280/bmp280)"
	case addr == 0x77:
		return "BME280/BMP280 (driver bme280/bmp280), BMP180, BME680"
	case addr >= 0x48 && addr <= 0x4B:
		return "ADS1115/ADS1015 ADC (driver ads1x15), TMP102, PCF8591"
	case addr >= 0x4C && addr <= 0x4F:
		return "TMP102, PCF8591, INA219"
	case addr >= 0x40 && addr <= 0x41:
		return "INA219/INA260, HTU21D/SHT21/Si7021 (0x40), PCA9685"
	case addr >= 0x42 && addr <= 0x43:
		return "INA219"
	case addr == 0x44 || addr == 0x45:
		return "SHT3x/SHT4x humidity, INA219"
	case addr == 0x38:
		return "AHT10/AHT20 humidity"
	case addr == 0x23 || addr == 0x5C:
		return "BH1750 light"
	case addr >= 0x18 && addr <= 0x1F:
		return "MCP9808 temperature, LIS3DH"
	case addr == 0x29:
		return "TSL2591/TSL2561 light, VL53L0X"
	case addr == 0x39:
		return "TSL2561 light, APDS-9960"
	case addr == 0x62:
		return "SCD40/SCD41 CO₂"
	case addr == 0x61:
		return "SCD30 CO₂"
	case addr == 0x5A || addr == 0x5B:
		return "CCS811 air quality, MLX90614"
	case addr == 0x68:
		return "DS3231/DS1307 RTC, MPU6050"
	case addr == 0x69:
		return "MPU6050, SPS30"
	case addr >= 0x50 && addr <= 0x57:
		return "AT24 EEPROM (e.g. on an RTC board or a HAT)"
	case addr == 0x3C || addr == 0x3D:
		return "SSD1306 OLED display"
	case addr >= 0x20 && addr <= 0x27:
		return "MCP23017/PCF8574 GPIO expander, LCD backpack"
	case addr >= 0x70 && addr <= 0x77:
		return "TCA9548A I²C multiplexer, HT16K33"
	}
	return ""
}

// Found reports whether anything could be scanned at all.
func (r *Result) Found() bool { return r.scanned > 0 || r.W1Err == nil }

// WriteText writes the result for a person.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	if r.I2CErr != nil {
		fmt.Fprintf(&b, "I²C: %v\n", r.I2CErr)
	}
	for _, bus := range r.Buses {
		fmt.Fprintf(&b, "I²C bus %d (%s", bus.Number, bus.Path)
		if bus.Adapter != "" {
			fmt.Fprintf(&b, ", %s", bus.Adapter)
		}
		b.WriteString("):\n")
		for _, d := range bus.Found {
			fmt.Fprintf(&b, "  0x%02x", d.Addr)
			if d.InUse {
				b.WriteString("  in use by a kernel driver (UU)")
			}
			if d.Likely != "" {
				fmt.Fprintf(&b, "  %s", d.Likely)
			}
			b.WriteByte('\n')
		}
		switch {
		case bus.Err != nil:
			fmt.Fprintf(&b, "  error: %v\n", bus.Err)
		case len(bus.Found) == 0:
			b.WriteString("  nothing answered at 0x08–0x77\n")
		}
	}
	if r.W1Err != nil {
		fmt.Fprintf(&b, "1-Wire: %v\n", r.W1Err)
	} else {
		fmt.Fprintf(&b, "1-Wire (%s):\n", r.w1Dir)
		for _, p := range r.OneWire {
			fmt.Fprintf(&b, "  %s", p.ID)
			if p.Family != "" {
				fmt.Fprintf(&b, "  %s", p.Family)
			}
			b.WriteByte('\n')
		}
		if len(r.OneWire) == 0 {
			b.WriteString("  no devices (check the wiring and the 4.7 kΩ pull-up)\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Run scans the live system (or the roots of opts) and writes the result
// to w. It returns an error when no bus at all could be scanned.
func Run(w io.Writer, opts Options) error {
	r := Scan(opts)
	if err := r.WriteText(w); err != nil {
		return err
	}
	if !r.Found() {
		return errors.New("sensors scan: no I²C or 1-Wire bus could be scanned")
	}
	return nil
}
