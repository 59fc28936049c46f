package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"periph.io/x/conn/v3"
)

// Limits on Opts.
const (
	MaxSeries = 10000
	// Default probabilities, per read and series, of a spike and of a
	// dropout.
	DefaultSpikeRate   = 0.002
	DefaultDropoutRate = 0.001
)

// Opts configures a simulated device.
type Opts struct {
	// Series is the number of values per read, 1 to MaxSeries.
	Series int
	// Seed selects the sequence; the same seed gives the same values.
	Seed uint64
	// SpikeRate is the probability, per read and series, that the value is
	// an outlier far from the signal. Negative means none; zero means
	// DefaultSpikeRate.
	SpikeRate float64
	// DropoutRate is the probability, per read and series, that the value is
	// missing from the read. Negative means none; zero means
	// DefaultDropoutRate.
	DropoutRate float64
}

// Value is one series' value in a read.
type Value struct {
	Series int     // 0 … Series-1
	Value  float64 // rounded to 0.01
}

// Dev is a simulated sensor. It is not safe for concurrent use.
type Dev struct {
	name    string
	opts    Opts
	rng     *rand.Rand
	shapes  []shape
	spike   float64
	dropout float64
}

// shape is the signal of one series: a daily cycle around a base value plus
// a slowly wandering offset and white noise.
type shape struct {
	base, amplitude, phase, noise float64
	walk                          float64
}

// New returns a simulated device named name.
func New(name string, opts Opts) (*Dev, error) {
	if opts.Series < 1 || opts.Series > MaxSeries {
		return nil, fmt.Errorf("sim: series must be between 1 and %d, got %d", MaxSeries, opts.Series)
	}
	if opts.SpikeRate > 1 || opts.DropoutRate > 1 || math.IsNaN(opts.SpikeRate) || math.IsNaN(opts.DropoutRate) {
		return nil, errors.New("sim: spike and dropout rates must be at most 1")
	}
	d := &Dev{
		name:    name,
		opts:    opts,
		rng:     rand.New(rand.NewPCG(opts.Seed, 0x6f7574706f7374)), // "outpost"
		spike:   rate(opts.SpikeRate, DefaultSpikeRate),
		dropout: rate(opts.DropoutRate, DefaultDropoutRate),
	}
	// Each series looks like a different quantity: temperatures around
	// 5–30 °C, humidities around 40–80 %, pressures around 1000 hPa.
	d.shapes = make([]shape, opts.Series)
	for i := range d.shapes {
		var s shape
		switch i % 3 {
		case 0:
			s = shape{base: 5 + 25*d.rng.Float64(), amplitude: 2 + 6*d.rng.Float64(), noise: 0.05}
		case 1:
			s = shape{base: 40 + 40*d.rng.Float64(), amplitude: 5 + 10*d.rng.Float64(), noise: 0.3}
		default:
			s = shape{base: 990 + 30*d.rng.Float64(), amplitude: 1 + 2*d.rng.Float64(), noise: 0.05}
		}
		// The warmest hour is mid-afternoon, give or take two hours.
		s.phase = (15 + 4*(d.rng.Float64()-0.5)) / 24
		d.shapes[i] = s
	}
	return d, nil
}

func rate(v, def float64) float64 {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return def
	}
	return v
}

// String returns "sim(name)".
func (d *Dev) String() string { return "sim(" + d.name + ")" }

// Series returns the number of series per read.
func (d *Dev) Series() int { return d.opts.Series }

// SeriesName returns the measurement name of series i: "s0", "s1", ….
func SeriesName(i int) string { return "s" + strconv.Itoa(i) }

// Read appends one value per series for time t to dst and returns it. A
// series may be missing (a dropout); the others are in order of Series.
func (d *Dev) Read(t time.Time, dst []Value) []Value {
	// Fraction of the UTC day, 0 at midnight.
	day := float64(t.UnixNano()%int64(24*time.Hour)) / float64(24*time.Hour)
	if day < 0 {
		day++
	}
	for i := range d.shapes {
		s := &d.shapes[i]
		// A bounded random walk makes consecutive days differ.
		s.walk = 0.999*s.walk + 0.02*s.amplitude*d.rng.NormFloat64()
		if d.dropout > 0 && d.rng.Float64() < d.dropout {
			continue
		}
		v := s.base + s.walk + s.amplitude*math.Cos(2*math.Pi*(day-s.phase)) + s.noise*d.rng.NormFloat64()
		if d.spike > 0 && d.rng.Float64() < d.spike {
			v += (2*d.rng.Float64() - 1) * 10 * s.amplitude
		}
		dst = append(dst, Value{Series: i, Value: math.Round(v*100) / 100})
	}
	return dst
}

// Halt does nothing; it is there so a Dev is a periph conn.Resource.
func (d *Dev) Halt() error { return nil }

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
