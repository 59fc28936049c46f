package sampler

import (
	"context"
	"errors"

	"go.yaml.in/yaml/v3"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/ads1x15"
	"github.com/outpost-iot/outpost/internal/reading"
)

// ads1x15 keys: bus (required), address (0x48–0x4b, default 0x48), chip
// (ads1115 or ads1015, default ads1115), channels (required): a list of
// {name (required), input (0–3 against GND, or 0-1, 0-3, 1-3, 2-3
// differential; required), range (full scale in volts: 6.144, 4.096,
// 2.048, 1.024, 0.512 or 0.256; default 4.096), scale (default 1), offset
// (default 0), unit (default V)}; value = volts × scale + offset.
type ads1x15Opts struct {
	bus   string
	addr  uint16
	chip  string
	chans []ads1x15.Channel
}

var ads1x15Inputs = map[string]ads1x15.Input{
	"0": ads1x15.A0, "1": ads1x15.A1, "2": ads1x15.A2, "3": ads1x15.A3,
	"0-1": ads1x15.A0MinA1, "0-3": ads1x15.A0MinA3, "1-3": ads1x15.A1MinA3, "2-3": ads1x15.A2MinA3,
}

func decodeADS1x15(m *strictyaml.Map, sensor string) any {
	o := &ads1x15Opts{
		bus:  i2cBus(m),
		addr: address(m, "address", 0x48, "ADS1x15", ads1x15.ValidAddr, "0x48, 0x49, 0x4a or 0x4b"),
		chip: m.OneOf("chip", "ads1115", "ads1115", "ads1015"),
	}
	n := m.Get("channels")
	if n == nil || n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		m.ErrorAt(n, "channels", "must be a list such as [{name: soil, input: 0}]")
		return o
	}
	names := map[string]bool{}
	for i, cn := range n.Content {
		c, ok := m.Entry("channels", i, cn, "{name: soil, input: 0}")
		if !ok {
			continue
		}
		ch := ads1x15.Channel{Name: c.Required("name")}
		if ch.Name != "" {
			measurementName(c, c.Get("name"), "name", sensor, ch.Name)
			if names[ch.Name] {
				c.Errorf("name", "%q is already the name of another channel", ch.Name)
			}
			names[ch.Name] = true
		}
		if in := c.Required("input"); in != "" {
			var known bool
			if ch.Input, known = ads1x15Inputs[in]; !known {
				c.Errorf("input", "%q is not one of 0, 1, 2, 3, 0-1, 0-3, 1-3, 2-3", in)
			}
		}
		ch.Range = c.Float("range", 4.096)
		if !validRange(ch.Range) {
			c.Errorf("range", "%v V is not one of 6.144, 4.096, 2.048, 1.024, 0.512, 0.256", ch.Range)
		}
		ch.Scale = c.Float("scale", 1)
		if ch.Scale == 0 {
			c.Errorf("scale", "must not be 0")
		}
		ch.Offset = c.Float("offset", 0)
		ch.Unit = c.Str("unit", "V")
		o.chans = append(o.chans, ch)
	}
	return o
}

func validRange(v float64) bool {
	for _, r := range ads1x15.Ranges {
		if v == r {
			return true
		}
	}
	return false
}

type ads1x15Sensor struct {
	bus   i2c.BusCloser
	dev   *ads1x15.Dev
	names *names
	vals  []ads1x15.Value
}

func openADS1x15(spec SensorSpec, e *env) (sensor, error) {
	o := spec.opts.(*ads1x15Opts)
	bus, err := e.openI2C(o.bus)
	if err != nil {
		return nil, err
	}
	dev, err := ads1x15.New(bus, o.addr, o.chip, o.chans)
	if err != nil {
		return nil, errors.Join(err, bus.Close())
	}
	return &ads1x15Sensor{bus: bus, dev: dev, names: newNames(spec.Name)}, nil
}

func (s *ads1x15Sensor) String() string { return s.dev.String() }

func (s *ads1x15Sensor) Close() error { return errors.Join(s.dev.Halt(), s.bus.Close()) }

func (s *ads1x15Sensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	var err error
	s.vals, err = s.dev.Read(s.vals[:0])
	for _, v := range s.vals {
		dst = append(dst, s.names.reading(v.Name, v.Unit, v.Value))
	}
	return dst, err
}

// Interface guards.
var _ sensor = (*ads1x15Sensor)(nil)
