package sampler

import (
	"context"
	"errors"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/aht20"
	"github.com/outpost-iot/outpost/internal/reading"
)

// aht20 keys: bus (required); the address is always 0x38. Measurements:
// temperature (C), humidity (%).
type aht20Opts struct{ bus string }

func decodeAHT20(m *strictyaml.Map, _ string) any { return &aht20Opts{bus: i2cBus(m)} }

type aht20Sensor struct {
	bus   i2c.BusCloser
	dev   *aht20.Dev
	names *names
}

func openAHT20(spec SensorSpec, e *env) (sensor, error) {
	bus, err := e.openI2C(spec.opts.(*aht20Opts).bus)
	if err != nil {
		return nil, err
	}
	dev, err := aht20.New(bus)
	if err != nil {
		return nil, errors.Join(err, bus.Close())
	}
	return &aht20Sensor{bus: bus, dev: dev, names: newNames(spec.Name)}, nil
}

func (s *aht20Sensor) String() string { return s.dev.String() }
func (s *aht20Sensor) Close() error   { return errors.Join(s.dev.Halt(), s.bus.Close()) }

func (s *aht20Sensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	v, err := s.dev.Sense()
	if err != nil {
		return dst, err
	}
	return append(dst,
		s.names.reading("temperature", "C", v.Temperature),
		s.names.reading("humidity", "%", v.Humidity)), nil
}

// Interface guards.
var _ sensor = (*aht20Sensor)(nil)
