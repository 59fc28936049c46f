// Package strictyaml reads the edge daemon's YAML strictly, key by key.
// The code that knows a section asks for each of its keys, with the key's
// default; the Decoder records every problem of the file (a syntax error,
// a bad value, a key given twice, a key nobody asked for) as a Problem
// that names the file, the line and the key path, so that one run names
// them all:
//
//	outpost.yaml: line 4: spool.max_byte: unknown key (known here: commit_interval, max_age, max_bytes, path, policy)
//	outpost.yaml: line 14: sensors[1] (greenhouse).address: "0x99" is not a valid BME280 address (want 0x76 or 0x77)
//
// The config package reads the top-level sections with it and hands the
// same Decoder to the sampler for the sensors list, so each driver's keys
// are checked in the same pass and in the same words.
package strictyaml

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one mistake in a file.
type Problem struct {
	File string // "" when the caller named none
	Line int    // from 1; 0 when unknown
	Path string // "uplink.http.url", "sensors[1] (greenhouse).address"; "" for a syntax error
	Msg  string
}

// Error reads "<file>: line <line>: <path>: <msg>", leaving out what is
// unknown.
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File + ": ")
	}
	if p.Line > 0 {
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every mistake found in a file, in the order of its lines.
// It is the error a Decoder returns; errors.As finds it.
type Problems []Problem

// Error writes one problem a line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Decoder collects the problems of one file.
type Decoder struct {
	file     string
	problems Problems
	maps     []*Map // checked for repeated and unknown keys by Err
}

// NewDecoder returns a Decoder whose problems name file.
func NewDecoder(file string) *Decoder { return &Decoder{file: file} }

// Errorf records a problem at node n (its line) and key path.
func (d *Decoder) Errorf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Err reports the keys given twice and the keys no one asked for, then
// returns every problem (Problems) or nil. Call it once, after the last
// key is read.
func (d *Decoder) Err() error {
	for _, m := range d.maps {
		m.checkKeys()
	}
	d.maps = nil
	if len(d.problems) == 0 {
		return nil
	}
	slices.SortStableFunc(d.problems, func(a, b Problem) int { return a.Line - b.Line })
	return d.problems
}

// Map starts reading the mapping n at key path ("" for the file's top
// level). A null node (a key with nothing under it) is an empty mapping:
// every key keeps its default. Anything else that is not a mapping is a
// problem, and the Map returned reads as empty.
func (d *Decoder) Map(path string, n *yaml.Node) *Map {
	n = Resolve(n)
	m := &Map{d: d, path: path, vals: map[string]*yaml.Node{}, known: map[string]bool{}}
	d.maps = append(d.maps, m)
	if n == nil {
		return m
	}
	m.line = n.Line
	switch {
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			m.keys = append(m.keys, k)
			if _, dup := m.vals[k.Value]; !dup {
				m.vals[k.Value] = Resolve(n.Content[i+1])
			}
		}
	case !IsNull(n):
		d.Errorf(n, path, "must be a mapping of keys")
	}
	return m
}

// Entry starts reading an entry of a list that must be a mapping, such as
// one sensor: null is a problem too. example shows the reader what one
// looks like, e.g. "{name: demo, driver: sim, interval: 1s}".
func (d *Decoder) Entry(path string, n *yaml.Node, example string) (*Map, bool) {
	if r := Resolve(n); r == nil || r.Kind != yaml.MappingNode {
		d.Errorf(n, path, "must be a mapping such as %s", example)
		return nil, false
	}
	return d.Map(path, n), true
}

// Resolve follows aliases (*anchor) to the node they name, and a document
// to its content.
func Resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < 100; i++ {
		switch {
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
}

// IsNull says whether n is YAML's null (a key with no value, ~ or null).
func IsNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// Map is one YAML mapping being read. Each key read through it becomes a
// known key; when the Decoder finishes, the others are reported as
// unknown, with the list of the known ones.
type Map struct {
	d     *Decoder
	path  string // "sensors[1]"
	label string // "greenhouse": printed after the path
	line  int    // of the mapping, for a missing key
	keys  []*yaml.Node
	vals  map[string]*yaml.Node // the first value of each key
	known map[string]bool
	open  bool // the keys cannot be known: report none as unknown
}

// Label names the mapping in its path, e.g. a sensor entry by its name:
// "sensors[1] (greenhouse).address".
func (m *Map) Label(name string) { m.label = name }

// AnyKeys says that which keys belong here cannot be known (a sensor of an
// unknown driver): the keys not read are not reported.
func (m *Map) AnyKeys() { m.open = true }

// Path is the mapping's key path, with its label.
func (m *Map) Path() string {
	if m.label == "" {
		return m.path
	}
	return m.path + " (" + m.label + ")"
}

// Key is the key path of key in this mapping.
func (m *Map) Key(key string) string {
	if p := m.Path(); p != "" {
		return p + "." + key
	}
	return key
}

// Has says whether the mapping holds key. It does not make key known.
func (m *Map) Has(key string) bool { _, ok := m.vals[key]; return ok }

// Get returns key's value (aliases followed), or nil when it is absent,
// and makes key known.
func (m *Map) Get(key string) *yaml.Node {
	m.known[key] = true
	return m.vals[key]
}

// Errorf records a problem about key, at the line of its value (of the
// mapping when key is absent).
func (m *Map) Errorf(key, format string, args ...any) { m.ErrorAt(m.vals[key], key, format, args...) }

// ErrorAt records a problem about key at node n's line (the mapping's when
// n is nil): an item of key's list, say.
func (m *Map) ErrorAt(n *yaml.Node, key, format string, args ...any) {
	if n == nil {
		n = &yaml.Node{Line: m.line}
	}
	m.d.Errorf(n, m.Key(key), format, args...)
}

// Map starts reading the mapping under key (see Decoder.Map).
func (m *Map) Map(key string) *Map {
	c := m.d.Map(m.Key(key), m.Get(key))
	if c.line == 0 {
		c.line = m.line
	}
	return c
}

// Entry starts reading item i of the list under key (see Decoder.Entry).
func (m *Map) Entry(key string, i int, n *yaml.Node, example string) (*Map, bool) {
	return m.d.Entry(m.Key(key)+"["+strconv.Itoa(i)+"]", n, example)
}

// checkKeys reports the keys given twice and, unless any key goes, those
// never read.
func (m *Map) checkKeys() {
	seen := map[string]bool{}
	for _, k := range m.keys {
		switch {
		case seen[k.Value]:
			m.ErrorAt(k, k.Value, "given twice")
		case !m.known[k.Value] && !m.open:
			m.ErrorAt(k, k.Value, "unknown key (known here: %s)", strings.Join(m.knownKeys(), ", "))
		}
		seen[k.Value] = true
	}
}

func (m *Map) knownKeys() []string {
	keys := make([]string, 0, len(m.known))
	for k := range m.known {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Scalar returns key's value as written, and false when key is absent or
// its value is not a single value (a problem).
func (m *Map) Scalar(key string) (string, bool) {
	n := m.Get(key)
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || IsNull(n) {
		m.Errorf(key, "must be a single value")
		return "", false
	}
	return n.Value, true
}

// Str returns key's value, or def when key is absent.
func (m *Map) Str(key, def string) string {
	if v, ok := m.Scalar(key); ok {
		return v
	}
	return def
}

// Required returns key's value, which must be there and not empty.
func (m *Map) Required(key string) string {
	v, ok := m.Scalar(key)
	switch {
	case !ok && !m.Has(key):
		m.Errorf(key, "missing")
	case ok && v == "":
		m.Errorf(key, "must not be empty")
	}
	return v
}

// OneOf returns key's value, which must be one of choices, or def.
func (m *Map) OneOf(key, def string, choices ...string) string {
	v, ok := m.Scalar(key)
	if !ok {
		return def
	}
	if !slices.Contains(choices, v) {
		m.Errorf(key, "%q is not one of %s", v, strings.Join(choices, ", "))
		return def
	}
	return v
}

// Int returns key's whole number, from lo to hi, or def.
func (m *Map) Int(key string, def, lo, hi int) int {
	v, ok := m.Scalar(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil || n < int64(lo) || n > int64(hi) {
		m.Errorf(key, "%q is not a whole number from %d to %d", v, lo, hi)
		return def
	}
	return int(n)
}

// Uint64 returns key's whole number >= 0, or def.
func (m *Map) Uint64(key string, def uint64) uint64 {
	v, ok := m.Scalar(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		m.Errorf(key, "%q is not a whole number >= 0", v)
		return def
	}
	return n
}

// Float returns key's finite number, or def.
func (m *Map) Float(key string, def float64) float64 {
	v, ok := m.Scalar(key)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		m.Errorf(key, "%q is not a finite number", v)
		return def
	}
	return f
}

// Duration returns key's Go duration ("500ms", "10s", "1h30m", or a bare
// 0), which must not be negative, or def.
func (m *Map) Duration(key string, def time.Duration) time.Duration {
	return m.duration(key, def, false)
}

// PositiveDuration is Duration for a key that must be more than 0.
func (m *Map) PositiveDuration(key string, def time.Duration) time.Duration {
	return m.duration(key, def, true)
}

func (m *Map) duration(key string, def time.Duration, positive bool) time.Duration {
	v, ok := m.Scalar(key)
	if !ok {
		return def
	}
	t, err := time.ParseDuration(v)
	switch {
	case err != nil:
		if _, nerr := strconv.ParseFloat(v, 64); nerr == nil {
			m.Errorf(key, "%q needs a unit, e.g. %ss", v, v)
		} else {
			m.Errorf(key, "%q is not a duration (e.g. 500ms, 10s, 1h)", v)
		}
	case t < 0:
		m.Errorf(key, "%q must not be negative", v)
	case t == 0 && positive:
		m.Errorf(key, "%q must be more than 0", v)
	default:
		return t
	}
	return def
}
