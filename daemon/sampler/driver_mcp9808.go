package sampler

import (
	"context"
	"errors"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/mcp9808"
	"github.com/outpost-iot/outpost/internal/reading"
)

// mcp9808 keys: bus (required), address (0x18–0x1f, default 0x18).
// Measurement: temperature (C).
type mcp9808Opts struct {
	bus  string
	addr uint16
}

func decodeMCP9808(m *strictyaml.Map, _ string) any {
	return &mcp9808Opts{
		bus:  i2cBus(m),
		addr: address(m, "address", 0x18, "MCP9808", mcp9808.ValidAddr, "0x18 to 0x1f"),
	}
}

type mcp9808Sensor struct {
	bus   i2c.BusCloser
	dev   *mcp9808.Dev
	names *names
}

func openMCP9808(spec SensorSpec, e *env) (sensor, error) {
	o := spec.opts.(*mcp9808Opts)
	bus, err := e.openI2C(o.bus)
	if err != nil {
		return nil, err
	}
	dev, err := mcp9808.New(bus, o.addr)
	if err != nil {
		return nil, errors.Join(err, bus.Close())
	}
	return &mcp9808Sensor{bus: bus, dev: dev, names: newNames(spec.Name)}, nil
}

func (s *mcp9808Sensor) String() string { return s.dev.String() }
func (s *mcp9808Sensor) Close() error   { return errors.Join(s.dev.Halt(), s.bus.Close()) }

func (s *mcp9808Sensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	v, err := s.dev.Sense()
	if err != nil {
		return dst, err
	}
	return append(dst, s.names.reading("temperature", "C", v)), nil
}

// Interface guards.
var _ sensor = (*mcp9808Sensor)(nil)
