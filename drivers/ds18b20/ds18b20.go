package ds18b20

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"periph.io/x/conn/v3"
)

// Sentinel errors, wrapped in a *ProbeError by Read.
var (
	// ErrNoProbe: no probe directory was found, or a named probe is absent.
	ErrNoProbe = errors.New("ds18b20: no probe")
	// ErrCRC: the scratchpad failed its CRC (noise, a long or
	// poorly terminated bus, a loose wire).
	ErrCRC = errors.New("ds18b20: CRC mismatch")
	// ErrPowerOnReset: the probe returned 85 °C, its power-on-reset value:
	// it reset (brown-out, parasite power) and did not convert.
	ErrPowerOnReset = errors.New("ds18b20: power-on-reset value 85 °C")
	// ErrNoResponse: the scratchpad is all zeros or all ones: nothing
	// answered on the bus.
	ErrNoResponse = errors.New("ds18b20: no response")
)

// ProbeError is a failed read of one probe.
type ProbeError struct {
	ID  string // e.g. "28-0316a2795bff"
	Err error
}

func (e *ProbeError) Error() string { return "ds18b20: " + e.ID + ": " + trimPrefix(e.Err.Error()) }
func (e *ProbeError) Unwrap() error { return e.Err }

func trimPrefix(s string) string {
	const p = "ds18b20: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// Temp is the temperature of one probe.
type Temp struct {
	ID      string
	Celsius float64
}

// Dev reads a set of probes on the kernel's w1 bus.
type Dev struct {
	dir string   // …/bus/w1/devices
	ids []string // probe ids, sorted
}

// ValidID reports whether id looks like a w1 slave directory name: two hex
// digits of family code, a dash, twelve hex digits of serial number.
func ValidID(id string) bool {
	if len(id) != 15 || id[2] != '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if i == 2 {
			continue
		}
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// New opens the probes ids on the w1 bus under sysRoot ("/sys" on a live
// system; tests point it at a testdata tree). With no ids it takes every
// DS18B20 (family 28) present now.
func New(sysRoot string, ids []string) (*Dev, error) {
	d := &Dev{dir: filepath.Join(sysRoot, "bus", "w1", "devices")}
	if len(ids) == 0 {
		found, err := Find(sysRoot)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%w under %s (is the w1-gpio overlay enabled and a probe wired?)", ErrNoProbe, d.dir)
		}
		d.ids = found
		return d, nil
	}
	for _, id := range ids {
		if !ValidID(id) {
			return nil, fmt.Errorf("ds18b20: %q is not a 1-Wire id (want e.g. 28-0316a2795bff)", id)
		}
		if _, err := os.Stat(filepath.Join(d.dir, id)); err != nil {
			return nil, &ProbeError{ID: id, Err: fmt.Errorf("%w: %w", ErrNoProbe, err)}
		}
	}
	d.ids = slices.Clone(ids)
	slices.Sort(d.ids)
	return d, nil
}

// Find lists the DS18B20 probes (family 28) present under sysRoot, sorted.
func Find(sysRoot string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(sysRoot, "bus", "w1", "devices", "28-*"))
	if err != nil {
		return nil, fmt.Errorf("ds18b20: %w", err)
	}
	var ids []string
	for _, p := range m {
		if id := filepath.Base(p); ValidID(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// String returns e.g. "ds18b20(28-0316a2795bff,28-3c01d607d4c2)".
func (d *Dev) String() string {
	b := []byte("ds18b20(")
	for i, id := range d.ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, id...)
	}
	return string(append(b, ')'))
}

// Probes returns the ids of the probes read, sorted.
func (d *Dev) Probes() []string { return slices.Clone(d.ids) }

// Read reads every probe (each read makes the kernel run a conversion, up
// to 750 ms at 12 bits) and appends the good ones to dst. The error joins
// a *ProbeError for each probe that failed; the others are still returned.
func (d *Dev) Read(dst []Temp) ([]Temp, error) {
	var errs []error
	for _, id := range d.ids {
		c, err := d.readProbe(id)
		if err != nil {
			errs = append(errs, &ProbeError{ID: id, Err: err})
			continue
		}
		dst = append(dst, Temp{ID: id, Celsius: c})
	}
	return dst, errors.Join(errs...)
}

func (d *Dev) readProbe(id string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, id, "w1_slave"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%w: %w", ErrNoProbe, err)
		}
		return 0, err
	}
	return parseW1Slave(b)
}

// parseW1Slave parses the two lines w1-therm writes:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
func parseW1Slave(b []byte) (float64, error) {
	line1, line2, ok := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	if !ok {
		return 0, fmt.Errorf("ds18b20: w1_slave has %d bytes and no second line", len(b))
	}
	_, verdict, ok := bytes.Cut(line1, []byte("crc="))
	if !ok {
		return 0, errors.New("ds18b20: w1_slave has no crc= field")
	}
	if !bytes.HasSuffix(bytes.TrimSpace(verdict), []byte("YES")) {
		return 0, ErrCRC
	}
	scratch, _, _ := bytes.Cut(line1, []byte(":"))
	if allSame(scratch) {
		return 0, ErrNoResponse
	}
	i := bytes.LastIndex(line2, []byte("t="))
	if i < 0 {
		return 0, errors.New("ds18b20: w1_slave has no t= field")
	}
	milli, err := strconv.Atoi(string(bytes.TrimSpace(line2[i+2:])))
	if err != nil {
		return 0, fmt.Errorf("ds18b20: w1_slave temperature: %w", err)
	}
	if milli == 85000 {
		return 0, ErrPowerOnReset
	}
	return float64(milli) / 1000, nil
}

// allSame reports whether the hex bytes of a scratchpad line are all 00 or
// all ff.
func allSame(scratch []byte) bool {
	f := bytes.Fields(scratch)
	if len(f) == 0 {
		return true
	}
	for _, x := range f {
		if !bytes.Equal(x, f[0]) {
			return false
		}
	}
	return bytes.Equal(f[0], []byte("00")) || bytes.EqualFold(f[0], []byte("ff"))
}

// Halt does nothing: the kernel owns the bus.
func (d *Dev) Halt() error { return nil }

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
