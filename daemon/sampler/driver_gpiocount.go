package sampler

import (
	"context"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/gpiocount"
	"github.com/outpost-iot/outpost/internal/reading"
)

// gpiocount keys: line (required: a line name such as GPIO17, or with chip
// an offset on that chip), chip (e.g. gpiochip0; optional), edge (falling,
// rising or both; default falling), pull (up, down or none; default up),
// debounce (default 0, e.g. 5ms for a reed switch), scale (per pulse,
// default 1, e.g. 0.2794 for a rain gauge in mm), unit (of the scaled count,
// default "pulses"), rate_unit (default unit + "/s"). Measurements: count
// (scaled pulses in the interval) and rate (count per second).
type gpiocountOpts struct {
	chip, line     string
	opts           gpiocount.Opts
	unit, rateUnit string
}

func decodeGPIOCount(m *strictyaml.Map, _ string) any {
	o := &gpiocountOpts{
		line: m.Required("line"),
		chip: m.Str("chip", ""),
		unit: m.Str("unit", "pulses"),
	}
	o.rateUnit = m.Str("rate_unit", o.unit+"/s")
	switch m.OneOf("edge", "falling", "falling", "rising", "both") {
	case "falling":
		o.opts.Edge = gpio.FallingEdge
	case "rising":
		o.opts.Edge = gpio.RisingEdge
	case "both":
		o.opts.Edge = gpio.BothEdges
	}
	switch m.OneOf("pull", "up", "up", "down", "none") {
	case "up":
		o.opts.Pull = gpio.PullUp
	case "down":
		o.opts.Pull = gpio.PullDown
	case "none":
		o.opts.Pull = gpio.PullNoChange
	}
	o.opts.Debounce = m.PositiveDuration("debounce", 0)
	if o.opts.Debounce > time.Second {
		m.Errorf("debounce", "%v is longer than a second: a pulse would be lost", o.opts.Debounce)
	}
	o.opts.Scale = m.Float("scale", 1)
	if o.opts.Scale == 0 {
		m.Errorf("scale", "must not be 0")
	}
	return o
}

type gpiocountSensor struct {
	dev            *gpiocount.Dev
	names          *names
	unit, rateUnit string
	counting       bool // false until the first read, at open, has passed
}

func openGPIOCount(spec SensorSpec, e *env) (sensor, error) {
	o := spec.opts.(*gpiocountOpts)
	pin, err := e.openGPIO(o.chip, o.line)
	if err != nil {
		return nil, err
	}
	dev, err := gpiocount.New(pin, o.opts)
	if err != nil {
		return nil, err
	}
	return &gpiocountSensor{dev: dev, names: newNames(spec.Name), unit: o.unit, rateUnit: o.rateUnit}, nil
}

func (s *gpiocountSensor) String() string { return s.dev.String() }
func (s *gpiocountSensor) Close() error   { return s.dev.Close() }

func (s *gpiocountSensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	v := s.dev.Read()
	if !s.counting {
		// The first read comes right after the open and covers no time:
		// the first count is the one of the next interval.
		s.counting = true
		return dst, nil
	}
	return append(dst,
		s.names.reading("count", s.unit, v.Count),
		s.names.reading("rate", s.rateUnit, v.Rate)), nil
}

// Interface guards.
var _ sensor = (*gpiocountSensor)(nil)
