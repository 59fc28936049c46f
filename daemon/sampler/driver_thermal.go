package sampler

import (
	"context"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/thermal"
	"github.com/outpost-iot/outpost/internal/reading"
)

// thermal keys: zone (the N of /sys/class/thermal/thermal_zoneN, default 0,
// the SoC on a Raspberry Pi). Measurement: temperature (C).
type thermalOpts struct{ zone int }

func decodeThermal(m *strictyaml.Map, _ string) any {
	return &thermalOpts{zone: m.Int("zone", 0, 0, 1000)}
}

type thermalSensor struct {
	dev   *thermal.Dev
	names *names
}

func openThermal(spec SensorSpec, e *env) (sensor, error) {
	dev, err := thermal.New(e.sysRoot, spec.opts.(*thermalOpts).zone)
	if err != nil {
		return nil, err
	}
	return thermalSensor{dev, newNames(spec.Name)}, nil
}

func (s thermalSensor) String() string { return s.dev.String() }
func (s thermalSensor) Close() error   { return s.dev.Halt() }

func (s thermalSensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	v, err := s.dev.Read()
	if err != nil {
		return dst, err
	}
	return append(dst, s.names.reading("temperature", "C", v)), nil
}

// Interface guards.
var _ sensor = thermalSensor{}
