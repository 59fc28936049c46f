package sampler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/internal/reading"
)

// SensorSpec is one decoded entry of the config's sensors list.
type SensorSpec struct {
	Name     string        // 1–64 of [A-Za-z0-9_-]; prefix of its samples' names
	Driver   string        // a key of the registry, e.g. "bme280"
	Interval time.Duration // time between reads
	Line     int           // line of the entry in the config file
	opts     any           // the driver's own settings
}

// DefaultInterval is the interval of a sensor whose entry has none.
const DefaultInterval = time.Minute

// MaxNameLen is the longest sensor name.
const MaxNameLen = 64

// SimSensor returns the spec of a sim sensor, as a config entry
// {name: NAME, driver: sim, interval: INTERVAL, series: SERIES, seed: SEED}
// would, for embedded defaults, demos and benchmarks.
func SimSensor(name string, interval time.Duration, series int, seed uint64) SensorSpec {
	return SensorSpec{Name: name, Driver: "sim", Interval: interval, opts: &simOpts{series: series, seed: seed}}
}

// DecodeSensors decodes the config's sensors list n, at key path (e.g.
// "sensors"), strictly, recording every problem in d: those of each entry
// and of the list (two entries of one name). A null list is an empty one.
// It returns one spec per entry, in order; while d has problems, the specs
// may be incomplete and must not be run.
func DecodeSensors(d *strictyaml.Decoder, path string, n *yaml.Node) []SensorSpec {
	n = strictyaml.Resolve(n)
	if n == nil || strictyaml.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, path, "must be a list of sensors")
		return nil
	}
	specs := make([]SensorSpec, len(n.Content))
	names := map[string]int{}
	for i, item := range n.Content {
		spec, m := decodeSensor(d, path+"["+strconv.Itoa(i)+"]", item)
		specs[i] = spec
		if spec.Name == "" {
			continue
		}
		if j, dup := names[spec.Name]; dup {
			m.Errorf("name", "%q is already the name of %s[%d]", spec.Name, path, j)
			continue
		}
		names[spec.Name] = i
	}
	return specs
}

// DecodeSensor decodes one entry of the sensors list, at key path (e.g.
// "sensors[1]"): the common keys name, driver and interval, and the
// driver's own keys. Unknown keys, bad values and intervals below the
// driver's minimum are recorded in d, such as
//
//	outpost.yaml: line 14: sensors[1] (greenhouse).address: "0x99" is not a valid BME280 address (want 0x76 or 0x77)
//
// The spec has what could be decoded: its name even when its driver is
// unknown, so that a list can still check names.
func DecodeSensor(d *strictyaml.Decoder, path string, n *yaml.Node) SensorSpec {
	spec, _ := decodeSensor(d, path, n)
	return spec
}

// decodeSensor is DecodeSensor, returning the entry's mapping too (nil when
// the entry is not one) for problems that span entries.
func decodeSensor(d *strictyaml.Decoder, path string, n *yaml.Node) (SensorSpec, *strictyaml.Map) {
	m, ok := d.Entry(path, n, "{name: demo, driver: sim, interval: 1s}")
	if !ok {
		return SensorSpec{}, nil
	}
	spec := SensorSpec{Line: strictyaml.Resolve(n).Line}
	spec.Name = m.Required("name")
	if spec.Name != "" {
		m.Label(spec.Name)
		if err := validName(spec.Name); err != nil {
			m.Errorf("name", "%v", err)
		}
	}
	spec.Driver = m.Required("driver")
	drv, ok := drivers[spec.Driver]
	if !ok {
		if spec.Driver != "" {
			m.Errorf("driver", "unknown driver %q (known: %s)", spec.Driver, strings.Join(driverNames(), ", "))
		}
		m.AnyKeys() // which keys belong here depends on the driver
	}
	spec.Interval = m.PositiveDuration("interval", DefaultInterval)
	if ok {
		if spec.Interval < drv.minInterval && m.Has("interval") {
			m.Errorf("interval", "%v is below the %s driver's minimum of %v", spec.Interval, spec.Driver, drv.minInterval)
		}
		spec.opts = drv.decode(m, spec.Name)
	}
	return spec, m
}

func validName(s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("%q is longer than %d characters", s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%q: character %q is not one of [A-Za-z0-9_-]", s, rune(c))
		}
	}
	return nil
}

// measurementName checks a user-chosen measurement name (an ADC channel,
// a probe alias) of key in m, at node n: the sample's name
// "<sensor>.<measurement>" must fit the wire contract's limit.
func measurementName(m *strictyaml.Map, n *yaml.Node, key, sensor, name string) {
	if err := validName(name); err != nil {
		m.ErrorAt(n, key, "%v", err)
		return
	}
	if l := len(sensor) + 1 + len(name); l > reading.MaxSensorLen {
		m.ErrorAt(n, key, "%q makes the sample name %s.%s %d bytes long, over the limit of %d", name, sensor, name, l, reading.MaxSensorLen)
	}
}

func driverNames() []string {
	var names []string
	for k := range drivers {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// address reads an I²C address (0x76, 118 or "0x76") and checks it with
// valid; want describes the valid ones for the error message.
func address(m *strictyaml.Map, key string, def uint16, chip string, valid func(uint16) bool, want string) uint16 {
	v, ok := m.Scalar(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 0, 16)
	if err != nil || !valid(uint16(n)) {
		m.Errorf(key, "%q is not a valid %s address (want %s)", v, chip, want)
		return def
	}
	return uint16(n)
}

// probability reads a number from 0 to 1.
func probability(m *strictyaml.Map, key string, def float64) float64 {
	v := m.Float(key, def)
	if v < 0 || v > 1 {
		m.Errorf(key, "%v is not a probability from 0 to 1", v)
		return def
	}
	return v
}
