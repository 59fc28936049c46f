package ina219

import (
	"fmt"
	"math"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ina219"
)

// ValidAddr reports whether addr is one the chip can have (A0, A1 pins).
func ValidAddr(addr uint16) bool { return addr >= 0x40 && addr <= 0x4F }

// Opts describes the shunt.
type Opts struct {
	ShuntOhms  float64 // 0 means 0.1 Ω, the usual breakout's
	MaxCurrent float64 // amperes expected at most; 0 means 3.2 A
}

// Values is one measurement.
type Values struct {
	BusVolts   float64 // V, load side
	ShuntVolts float64 // V across the shunt
	Current    float64 // A
	Power      float64 // W
}

// Dev is an INA219 on an I²C bus. The bus is the caller's.
type Dev struct {
	dev  *ina219.Dev
	bus  string
	addr uint16
}

// New writes the calibration for the shunt and starts continuous
// conversion.
func New(bus i2c.Bus, addr uint16, opts Opts) (*Dev, error) {
	if !ValidAddr(addr) {
		return nil, fmt.Errorf("ina219: address %#x is not valid (want 0x40 to 0x4f)", addr)
	}
	if opts.ShuntOhms == 0 {
		opts.ShuntOhms = 0.1
	}
	if opts.MaxCurrent == 0 {
		opts.MaxCurrent = 3.2
	}
	if !(opts.ShuntOhms > 0 && opts.ShuntOhms < 1000) || !(opts.MaxCurrent > 0 && opts.MaxCurrent < 1000) {
		return nil, fmt.Errorf("ina219: shunt %v Ω and max current %v A must be positive", opts.ShuntOhms, opts.MaxCurrent)
	}
	dev, err := ina219.New(bus, &ina219.Opts{
		Address:       int(addr),
		SenseResistor: physic.ElectricResistance(math.Round(opts.ShuntOhms * float64(physic.Ohm))),
		MaxCurrent:    physic.ElectricCurrent(math.Round(opts.MaxCurrent * float64(physic.Ampere))),
	})
	if err != nil {
		return nil, fmt.Errorf("ina219: %s at %#x: %w", bus, addr, err)
	}
	return &Dev{dev: dev, bus: bus.String(), addr: addr}, nil
}

// String returns e.g. "INA219 on I2C1 at 0x40".
func (d *Dev) String() string { return fmt.Sprintf("INA219 on %s at %#x", d.bus, d.addr) }

// Sense reads the four registers.
func (d *Dev) Sense() (Values, error) {
	p, err := d.dev.Sense()
	if err != nil {
		return Values{}, fmt.Errorf("ina219: %s: %w", d, err)
	}
	return Values{
		BusVolts:   float64(p.Voltage) / float64(physic.Volt),
		ShuntVolts: float64(p.Shunt) / float64(physic.Volt),
		Current:    float64(p.Current) / float64(physic.Ampere),
		Power:      float64(p.Power) / float64(physic.Watt),
	}, nil
}

// Halt does nothing: the chip keeps converting (about 1 mA).
func (d *Dev) Halt() error { return nil }

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
