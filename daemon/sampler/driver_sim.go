package sampler

import (
	"context"
	"time"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/sim"
	"github.com/outpost-iot/outpost/internal/reading"
)

// sim keys: series (1–10000, default 1), seed (default 1), spike_rate and
// dropout_rate (probability per read and series, 0–1, 0 = none; default
// 0.002 and 0.001).
type simOpts struct {
	series           int
	seed             uint64
	spikes, dropouts float64
	hasRates         bool
}

func decodeSim(m *strictyaml.Map, _ string) any {
	o := &simOpts{
		series:   m.Int("series", 1, 1, sim.MaxSeries),
		seed:     m.Uint64("seed", 1),
		hasRates: true,
	}
	o.spikes = probability(m, "spike_rate", sim.DefaultSpikeRate)
	o.dropouts = probability(m, "dropout_rate", sim.DefaultDropoutRate)
	return o
}

// simRate maps a config probability (0 = none) to sim.Opts (0 = default,
// negative = none).
func simRate(v float64, set bool) float64 {
	if !set {
		return 0
	}
	if v == 0 {
		return -1
	}
	return v
}

// simSensor adapts a sim.Dev: series i is "<sensor name>.s<i>", with the
// unit of the quantity it imitates.
type simSensor struct {
	dev   *sim.Dev
	names []string // by series
	vals  []sim.Value
}

var simUnits = [3]string{"C", "%", "hPa"}

func openSim(spec SensorSpec, _ *env) (sensor, error) {
	o := spec.opts.(*simOpts)
	dev, err := sim.New(spec.Name, sim.Opts{
		Series:      o.series,
		Seed:        o.seed,
		SpikeRate:   simRate(o.spikes, o.hasRates),
		DropoutRate: simRate(o.dropouts, o.hasRates),
	})
	if err != nil {
		return nil, err
	}
	s := &simSensor{dev: dev, names: make([]string, o.series)}
	for i := range s.names {
		s.names[i] = spec.Name + "." + sim.SeriesName(i)
	}
	return s, nil
}

func (s *simSensor) String() string { return s.dev.String() }
func (s *simSensor) Close() error   { return s.dev.Halt() }

func (s *simSensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	s.vals = s.dev.Read(time.Now(), s.vals[:0])
	for _, v := range s.vals {
		dst = append(dst, reading.Reading{Sensor: s.names[v.Series], Unit: simUnits[v.Series%3], Value: v.Value})
	}
	return dst, nil
}

// Interface guards.
var _ sensor = (*simSensor)(nil)
