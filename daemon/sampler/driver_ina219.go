package sampler

import (
	"context"
	"errors"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/ina219"
	"github.com/outpost-iot/outpost/internal/reading"
)

// ina219 keys: bus (required), address (0x40–0x4f, default 0x40),
// shunt_ohms (default 0.1), max_current (amperes, default 3.2).
// Measurements: voltage (V, bus side), current (A), power (W).
type ina219Opts struct {
	bus  string
	addr uint16
	opts ina219.Opts
}

func decodeINA219(m *strictyaml.Map, _ string) any {
	o := &ina219Opts{
		bus:  i2cBus(m),
		addr: address(m, "address", 0x40, "INA219", ina219.ValidAddr, "0x40 to 0x4f"),
	}
	o.opts.ShuntOhms = m.Float("shunt_ohms", 0.1)
	if o.opts.ShuntOhms <= 0 {
		m.Errorf("shunt_ohms", "must be > 0")
	}
	o.opts.MaxCurrent = m.Float("max_current", 3.2)
	if o.opts.MaxCurrent <= 0 {
		m.Errorf("max_current", "must be > 0")
	}
	return o
}

type ina219Sensor struct {
	bus   i2c.BusCloser
	dev   *ina219.Dev
	names *names
}

func openINA219(spec SensorSpec, e *env) (sensor, error) {
	o := spec.opts.(*ina219Opts)
	bus, err := e.openI2C(o.bus)
	if err != nil {
		return nil, err
	}
	dev, err := ina219.New(bus, o.addr, o.opts)
	if err != nil {
		return nil, errors.Join(err, bus.Close())
	}
	return &ina219Sensor{bus: bus, dev: dev, names: newNames(spec.Name)}, nil
}

func (s *ina219Sensor) String() string { return s.dev.String() }
func (s *ina219Sensor) Close() error   { return errors.Join(s.dev.Halt(), s.bus.Close()) }

func (s *ina219Sensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	v, err := s.dev.Sense()
	if err != nil {
		return dst, err
	}
	return append(dst,
		s.names.reading("voltage", "V", v.BusVolts),
		s.names.reading("current", "A", v.Current),
		s.names.reading("power", "W", v.Power)), nil
}

// Interface guards.
var _ sensor = (*ina219Sensor)(nil)
