package mcp9808

import (
	"fmt"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/mcp9808"
)

// ValidAddr reports whether addr is one the chip can have (A0–A2 pins).
func ValidAddr(addr uint16) bool { return addr >= 0x18 && addr <= 0x1F }

// Dev is an MCP9808 on an I²C bus. The bus is the caller's.
type Dev struct {
	dev  *mcp9808.Dev
	bus  string
	addr uint16
}

// New sets the chip to its full 0.0625 °C resolution and wakes it.
func New(bus i2c.Bus, addr uint16) (*Dev, error) {
	if !ValidAddr(addr) {
		return nil, fmt.Errorf("mcp9808: address %#x is not valid (want 0x18 to 0x1f)", addr)
	}
	dev, err := mcp9808.New(bus, &mcp9808.Opts{Addr: int(addr), Res: mcp9808.Maximum})
	if err != nil {
		return nil, fmt.Errorf("mcp9808: %s at %#x: %w", bus, addr, err)
	}
	return &Dev{dev: dev, bus: bus.String(), addr: addr}, nil
}

// String returns e.g. "MCP9808 on I2C1 at 0x18".
func (d *Dev) String() string { return fmt.Sprintf("MCP9808 on %s at %#x", d.bus, d.addr) }

// Sense returns the ambient temperature in °C.
func (d *Dev) Sense() (float64, error) {
	t, err := d.dev.SenseTemp()
	if err != nil {
		return 0, fmt.Errorf("mcp9808: %s: %w", d, err)
	}
	return float64(t-physic.ZeroCelsius) / float64(physic.Celsius), nil
}

// Halt puts the chip in shutdown (about 0.1 µA); the next Sense wakes it.
func (d *Dev) Halt() error {
	if err := d.dev.Halt(); err != nil {
		return fmt.Errorf("mcp9808: %s: %w", d, err)
	}
	return nil
}

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
