package aht20

import (
	"fmt"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/aht20"
)

// Addr is the chip's only address.
const Addr uint16 = 0x38

// Values is one measurement.
type Values struct {
	Temperature float64 // °C
	Humidity    float64 // %RH
}

// Dev is an AHT20 on an I²C bus. The bus is the caller's.
type Dev struct {
	dev *aht20.Dev
	bus string
}

// New checks the chip's calibration state (and calibrates it if needed).
func New(bus i2c.Bus) (*Dev, error) {
	dev, err := aht20.NewI2C(bus, &aht20.DefaultOpts)
	if err != nil {
		return nil, fmt.Errorf("aht20: %s at %#x: %w", bus, Addr, err)
	}
	return &Dev{dev: dev, bus: bus.String()}, nil
}

// String returns e.g. "AHT20 on I2C1 at 0x38".
func (d *Dev) String() string { return fmt.Sprintf("AHT20 on %s at %#x", d.bus, Addr) }

// Sense triggers a measurement (80 ms) and returns it.
func (d *Dev) Sense() (Values, error) {
	var e physic.Env
	if err := d.dev.Sense(&e); err != nil {
		return Values{}, fmt.Errorf("aht20: %s: %w", d, err)
	}
	return Values{
		Temperature: float64(e.Temperature-physic.ZeroCelsius) / float64(physic.Celsius),
		Humidity:    float64(e.Humidity) / float64(physic.PercentRH),
	}, nil
}

// Halt stops any continuous sensing.
func (d *Dev) Halt() error { return d.dev.Halt() }

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
