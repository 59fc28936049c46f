package sampler

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

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

// DecodeSensors decodes the config's sensors list (a YAML sequence node of
// mappings) strictly, and reports every problem at once: each error names
// the entry, its line and the key.
func DecodeSensors(n *yaml.Node) ([]SensorSpec, error) {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("sensors: line %d: want a list of sensors", n.Line)
	}
	var specs []SensorSpec
	var errs []error
	names := map[string]int{}
	for i, item := range n.Content {
		s, err := DecodeSensor(i, item)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if j, dup := names[s.Name]; dup {
			errs = append(errs, fmt.Errorf("sensors[%d] (%s): line %d: name: %q is already the name of sensors[%d]", i, s.Name, item.Line, s.Name, j))
			continue
		}
		names[s.Name] = i
		specs = append(specs, s)
	}
	return specs, errors.Join(errs...)
}

// DecodeSensor decodes entry index of the sensors list: the common keys
// name, driver and interval, and the driver's own keys. Unknown keys, bad
// values and intervals below the driver's minimum are errors such as
//
//	sensors[1] (greenhouse): line 14: address: 0x99 is not a valid BME280 address (want 0x76 or 0x77)
//
// all of them joined.
func DecodeSensor(index int, n *yaml.Node) (SensorSpec, error) {
	d := newDecoder(fmt.Sprintf("sensors[%d]", index), n)
	if d == nil {
		return SensorSpec{}, fmt.Errorf("sensors[%d]: line %d: want a mapping such as {name: demo, driver: sim, interval: 1s}", index, n.Line)
	}
	spec := SensorSpec{Line: n.Line}
	spec.Name = d.str("name", "", true)
	if spec.Name != "" {
		d.sensor = spec.Name
		d.prefix = fmt.Sprintf("sensors[%d] (%s)", index, spec.Name)
		if err := validName(spec.Name); err != nil {
			d.errf("name", "%v", err)
		}
	}
	spec.Driver = d.str("driver", "", true)
	drv, ok := drivers[spec.Driver]
	if !ok && spec.Driver != "" {
		d.errf("driver", "unknown driver %q (known: %s)", spec.Driver, strings.Join(driverNames(), ", "))
	}
	spec.Interval = d.duration("interval", DefaultInterval)
	if ok {
		if spec.Interval < drv.minInterval && d.has("interval") {
			d.errf("interval", "%v is below the %s driver's minimum of %v", spec.Interval, spec.Driver, drv.minInterval)
		}
		spec.opts = drv.decode(d)
	}
	if err := d.finish(); err != nil {
		return SensorSpec{}, err
	}
	return spec, nil
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
// a probe alias): the sample's name "<sensor>.<measurement>" must fit the
// wire contract's limit.
func (d *decoder) measurementName(n *yaml.Node, key, name string) {
	if err := validName(name); err != nil {
		d.errAt(n, key, "%v", err)
		return
	}
	if l := len(d.sensor) + 1 + len(name); l > reading.MaxSensorLen {
		d.errAt(n, key, "%q makes the sample name %s.%s %d bytes long, over the limit of %d", name, d.sensor, name, l, reading.MaxSensorLen)
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

// decoder reads the keys of one YAML mapping strictly, collecting errors
// that name the entry, the line and the key.
type decoder struct {
	prefix string // "sensors[1] (greenhouse)"
	sensor string // the entry's name, once known
	node   *yaml.Node
	keys   []*yaml.Node          // in file order
	vals   map[string]*yaml.Node // key → value
	used   map[string]bool
	errs   []error
}

func newDecoder(prefix string, n *yaml.Node) *decoder {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	d := &decoder{prefix: prefix, node: n, vals: map[string]*yaml.Node{}, used: map[string]bool{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if _, dup := d.vals[k.Value]; dup {
			d.errs = append(d.errs, fmt.Errorf("%s: line %d: %s: key appears twice", prefix, k.Line, k.Value))
			continue
		}
		d.keys = append(d.keys, k)
		d.vals[k.Value] = v
	}
	return d
}

// resolve follows an alias (*anchor) to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// sub returns a decoder for the mapping n inside this one, e.g. a channel.
func (d *decoder) sub(path string, n *yaml.Node) *decoder {
	s := newDecoder(d.prefix, n)
	if s == nil {
		d.errAt(n, path, "want a mapping")
		return nil
	}
	s.prefix = d.prefix + ": " + path
	s.sensor = d.sensor
	return s
}

func (d *decoder) errAt(n *yaml.Node, key, format string, args ...any) {
	line := d.node.Line
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, fmt.Errorf("%s: line %d: %s: %s", d.prefix, line, key, fmt.Sprintf(format, args...)))
}

// errf records an error about key, at the key's value's line.
func (d *decoder) errf(key, format string, args ...any) { d.errAt(d.vals[key], key, format, args...) }

func (d *decoder) has(key string) bool { _, ok := d.vals[key]; return ok }

// get returns key's value node, marking the key as known.
func (d *decoder) get(key string) *yaml.Node {
	d.used[key] = true
	return d.vals[key]
}

// scalar returns key's scalar value, or ok=false if absent (or not a
// scalar, which is reported).
func (d *decoder) scalar(key string, required bool) (string, bool) {
	n := d.get(key)
	if n == nil {
		if required {
			d.errAt(nil, key, "missing")
		}
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errAt(n, key, "want a single value")
		return "", false
	}
	return n.Value, true
}

func (d *decoder) str(key, def string, required bool) string {
	v, ok := d.scalar(key, required)
	if !ok {
		return def
	}
	if v == "" && required {
		d.errf(key, "must not be empty")
	}
	return v
}

func (d *decoder) intIn(key string, def, lo, hi int) int {
	v, ok := d.scalar(key, false)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil || n < int64(lo) || n > int64(hi) {
		d.errf(key, "%s is not a whole number from %d to %d", v, lo, hi)
		return def
	}
	return int(n)
}

func (d *decoder) uint64(key string, def uint64) uint64 {
	v, ok := d.scalar(key, false)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		d.errf(key, "%s is not a whole number >= 0", v)
		return def
	}
	return n
}

func (d *decoder) float(key string, def float64) float64 {
	v, ok := d.scalar(key, false)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.errf(key, "%s is not a finite number", v)
		return def
	}
	return f
}

func (d *decoder) duration(key string, def time.Duration) time.Duration {
	v, ok := d.scalar(key, false)
	if !ok {
		return def
	}
	t, err := time.ParseDuration(v)
	if err != nil || t <= 0 {
		d.errf(key, "%q is not a positive duration such as 500ms, 10s or 5m", v)
		return def
	}
	return t
}

// address reads an I²C address (0x76, 118 or "0x76") and checks it with
// valid; want describes the valid ones for the error message.
func (d *decoder) address(key string, def uint16, chip string, valid func(uint16) bool, want string) uint16 {
	v, ok := d.scalar(key, false)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 0, 16)
	if err != nil || !valid(uint16(n)) {
		d.errf(key, "%s is not a valid %s address (want %s)", v, chip, want)
		return def
	}
	return uint16(n)
}

// probability reads a number from 0 to 1.
func (d *decoder) probability(key string, def float64) float64 {
	v := d.float(key, def)
	if v < 0 || v > 1 {
		d.errf(key, "%v is not a probability from 0 to 1", v)
		return def
	}
	return v
}

// oneOf reads a value that must be one of choices.
func (d *decoder) oneOf(key, def string, choices ...string) string {
	v, ok := d.scalar(key, false)
	if !ok {
		return def
	}
	if !slices.Contains(choices, v) {
		d.errf(key, "%q is not one of %s", v, strings.Join(choices, ", "))
		return def
	}
	return v
}

// finish reports the unknown keys and returns every error.
func (d *decoder) finish() error {
	for _, k := range d.keys {
		if !d.used[k.Value] {
			d.errs = append(d.errs, fmt.Errorf("%s: line %d: %s: unknown key", d.prefix, k.Line, k.Value))
		}
	}
	return errors.Join(d.errs...)
}

// absorb moves a sub-decoder's errors into d.
func (d *decoder) absorb(s *decoder) {
	if err := s.finish(); err != nil {
		d.errs = append(d.errs, s.errs...)
	}
}
