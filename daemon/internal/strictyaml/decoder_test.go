package strictyaml

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func parse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	n, err := Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse(%q) = %v", src, err)
	}
	return n
}

// server is a section of two keys and a subsection, read as a caller of
// the package would.
type server struct {
	host    string
	port    int
	timeout time.Duration
	mode    string
}

func decodeServer(d *Decoder, n *yaml.Node) server {
	top := d.Map("", n)
	s := top.Map("server")
	srv := server{host: s.Required("host"), port: s.Int("port", 80, 1, 65535)}
	srv.timeout = s.Map("limits").PositiveDuration("timeout", time.Second)
	srv.mode = top.OneOf("mode", "fast", "fast", "safe")
	return srv
}

func TestDecoderReportsEveryProblemInLineOrder(t *testing.T) {
	d := NewDecoder("c.yaml")
	decodeServer(d, parse(t, `mode: slow
server:
  port: 99999
  prot: 8080
  limits: {timeout: 10, burst: 5}
  port: 81
extra: 1
`))
	err := d.Err()
	want := []string{
		`c.yaml: line 1: mode: "slow" is not one of fast, safe`,
		`c.yaml: line 3: server.host: missing`, // at the mapping, whose first key is on line 3
		`c.yaml: line 3: server.port: "99999" is not a whole number from 1 to 65535`,
		`c.yaml: line 4: server.prot: unknown key (known here: host, limits, port)`,
		`c.yaml: line 5: server.limits.timeout: "10" needs a unit, e.g. 10s`,
		`c.yaml: line 5: server.limits.burst: unknown key (known here: timeout)`,
		`c.yaml: line 6: server.port: given twice`,
		`c.yaml: line 7: extra: unknown key (known here: mode, server)`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("Err() =\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != len(want) || ps[3].Line != 4 || ps[3].Path != "server.prot" {
		t.Errorf("Err() as Problems = %#v; want %d problems, the 4th at line 4, server.prot", ps, len(want))
	}
}

func TestDecoderDefaultsAndValues(t *testing.T) {
	d := NewDecoder("c.yaml")
	srv := decodeServer(d, parse(t, "server: {host: example.com, limits: {timeout: 2m}}\n"))
	if err := d.Err(); err != nil {
		t.Fatalf("Err() = %v", err)
	}
	if srv != (server{host: "example.com", port: 80, timeout: 2 * time.Minute, mode: "fast"}) {
		t.Errorf("decoded %+v; want the given host and timeout, the other defaults", srv)
	}
	// A section with nothing under it, or a file of nothing, is all defaults.
	for _, src := range []string{"server:\n  host: h\n  limits:\n", "server: {host: h, limits: ~}\n"} {
		d := NewDecoder("c.yaml")
		if srv := decodeServer(d, parse(t, src)); d.Err() != nil || srv.timeout != time.Second {
			t.Errorf("%q: %+v, %v; want the default timeout", src, srv, d.Err())
		}
	}
}

func TestDecoderShapes(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{"server: [a, b]\n", "c.yaml: line 1: server: must be a mapping of keys"},
		{"server: {host: [a]}\n", "c.yaml: line 1: server.host: must be a single value"},
		{"server: {host: ''}\n", "c.yaml: line 1: server.host: must not be empty"},
		{"server: {host: h, limits: {timeout: -1s}}\n", `c.yaml: line 1: server.limits.timeout: "-1s" must not be negative`},
		{"server: {host: h, limits: {timeout: 0}}\n", `c.yaml: line 1: server.limits.timeout: "0" must be more than 0`},
		{"server: {host: h, limits: {timeout: soon}}\n", `c.yaml: line 1: server.limits.timeout: "soon" is not a duration (e.g. 500ms, 10s, 1h)`},
		{"just a string\n", "c.yaml: line 1: must be a mapping of keys"},
	} {
		d := NewDecoder("c.yaml")
		decodeServer(d, parse(t, tc.src))
		if err := d.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: Err() =\n%v\nwant it to contain\n%s", tc.src, err, tc.want)
		}
	}
}

func TestEntryLabelAndAnyKeys(t *testing.T) {
	n := parse(t, "- {name: gh, kind: odd, colour: red}\n- plain\n- {name: x, speed: fast}\n")
	d := NewDecoder("")
	for i, item := range n.Content {
		m, ok := d.Entry("things["+string(rune('0'+i))+"]", item, "{name: x}")
		if !ok {
			continue
		}
		m.Label(m.Required("name"))
		if m.Str("kind", "") == "odd" {
			m.AnyKeys()
		}
	}
	want := "line 2: things[1]: must be a mapping such as {name: x}\n" +
		"line 3: things[2] (x).speed: unknown key (known here: kind, name)"
	if err := d.Err(); err == nil || err.Error() != want {
		t.Errorf("Err() =\n%v\nwant\n%s", err, want)
	}
}
