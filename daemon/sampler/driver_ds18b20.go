package sampler

import (
	"context"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/ds18b20"
	"github.com/outpost-iot/outpost/internal/reading"
)

// ds18b20 keys: probes, either a list of 1-Wire ids
// ([28-0316a2795bff, …]; each measurement is named by its id) or a mapping
// from measurement name to id ({soil: 28-0316a2795bff, air: 28-…}); without
// it, every DS18B20 on the bus when the sensor opens. Unit C.
type ds18b20Opts struct {
	ids   []string
	names map[string]string // id → measurement name
}

func decodeDS18B20(m *strictyaml.Map, sensor string) any {
	o := &ds18b20Opts{names: map[string]string{}}
	n := m.Get("probes")
	if n == nil {
		return o
	}
	add := func(name string, v *yaml.Node) {
		v = strictyaml.Resolve(v)
		if v.Kind != yaml.ScalarNode || !ds18b20.ValidID(v.Value) {
			m.ErrorAt(v, "probes", "%q is not a 1-Wire id such as 28-0316a2795bff", v.Value)
			return
		}
		if _, dup := o.names[v.Value]; dup {
			m.ErrorAt(v, "probes", "%s is listed twice", v.Value)
			return
		}
		measurementName(m, v, "probes", sensor, name)
		o.ids = append(o.ids, v.Value)
		o.names[v.Value] = name
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, v := range n.Content {
			add(strictyaml.Resolve(v).Value, v)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			add(n.Content[i].Value, n.Content[i+1])
		}
	default:
		m.ErrorAt(n, "probes", "must be a list of ids or a mapping from name to id")
	}
	return o
}

type ds18b20Sensor struct {
	dev    *ds18b20.Dev
	probes map[string]string // id → measurement name, as configured
	names  *names
	temps  []ds18b20.Temp
}

func openDS18B20(spec SensorSpec, e *env) (sensor, error) {
	o := spec.opts.(*ds18b20Opts)
	dev, err := ds18b20.New(e.sysRoot, o.ids)
	if err != nil {
		return nil, err
	}
	return &ds18b20Sensor{dev: dev, probes: o.names, names: newNames(spec.Name)}, nil
}

func (s *ds18b20Sensor) String() string { return s.dev.String() }
func (s *ds18b20Sensor) Close() error   { return s.dev.Halt() }

func (s *ds18b20Sensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	var err error
	s.temps, err = s.dev.Read(s.temps[:0])
	for _, t := range s.temps {
		name := s.probes[t.ID]
		if name == "" {
			name = t.ID
		}
		dst = append(dst, s.names.reading(name, "C", t.Celsius))
	}
	return dst, err
}

// Interface guards.
var _ sensor = (*ds18b20Sensor)(nil)
