package bme280

import (
	"fmt"
	"strings"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// Addresses the chips answer on, chosen by the SDO pin.
const (
	AddrLow  uint16 = 0x76 // SDO to GND
	AddrHigh uint16 = 0x77 // SDO to VDDIO
)

// ValidAddr reports whether addr is an address a BME280/BMP280 can have.
func ValidAddr(addr uint16) bool { return addr == AddrLow || addr == AddrHigh }

// Values is one measurement.
type Values struct {
	Temperature float64 // °C
	Pressure    float64 // hPa
	Humidity    float64 // %RH; only when HasHumidity
	HasHumidity bool    // the chip is a BME280
}

// Dev is a BME280 or BMP280 on an I²C bus. The bus is the caller's: Halt
// does not close it.
type Dev struct {
	dev  *bmxx80.Dev
	bus  string
	addr uint16
	chip string // "BME280", "BMP280"
}

// New initialises the chip at addr (0x76 or 0x77) on bus: it reads the chip
// id and the calibration and puts the chip to sleep between reads.
func New(bus i2c.Bus, addr uint16) (*Dev, error) {
	if !ValidAddr(addr) {
		return nil, fmt.Errorf("bme280: address %#x is not valid (want 0x76 or 0x77)", addr)
	}
	opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x}
	dev, err := bmxx80.NewI2C(bus, addr, &opts)
	if err != nil {
		return nil, wrap(fmt.Sprintf("%s %#x", bus, addr), err)
	}
	d := &Dev{dev: dev, bus: bus.String(), addr: addr}
	d.chip, _, _ = strings.Cut(dev.String(), "{")
	return d, nil
}

// Chip returns the detected chip: "BME280", "BMP280" (or "BMP180").
func (d *Dev) Chip() string { return d.chip }

// String returns e.g. "BME280 on I2C1 at 0x76".
func (d *Dev) String() string { return fmt.Sprintf("%s on %s at %#x", d.chip, d.bus, d.addr) }

// Sense runs one forced conversion and returns it.
func (d *Dev) Sense() (Values, error) {
	var e physic.Env
	if err := d.dev.Sense(&e); err != nil {
		return Values{}, wrap(d.String(), err)
	}
	v := Values{
		Temperature: float64(e.Temperature-physic.ZeroCelsius) / float64(physic.Celsius),
		Pressure:    float64(e.Pressure) / float64(100*physic.Pascal),
		HasHumidity: d.chip == "BME280",
	}
	if v.HasHumidity {
		v.Humidity = float64(e.Humidity) / float64(physic.PercentRH)
	}
	return v, nil
}

// Halt stops any continuous sensing; in forced mode the chip is already
// asleep between reads.
func (d *Dev) Halt() error {
	if err := d.dev.Halt(); err != nil {
		return wrap(d.String(), err)
	}
	return nil
}

// Error is an error of the chip or of its bus, prefixed with "bme280".
type Error struct {
	Where string // e.g. "BME280 on I2C1 at 0x76"
	Err   error
}

func (e *Error) Error() string {
	// periph's messages already start with the chip's name; say it once.
	msg := e.Err.Error()
	for _, p := range []string{"bme280: ", "bmp280: ", "bmp180: ", "bmxx80: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return "bme280: " + e.Where + ": " + msg
}

func (e *Error) Unwrap() error { return e.Err }

func wrap(where string, err error) error { return &Error{Where: where, Err: err} }

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
