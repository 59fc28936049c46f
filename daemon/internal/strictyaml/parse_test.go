package strictyaml

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The yaml package names the line where the construct around a mistake
// began, sometimes counted from 0; Parse names the line of the mistake.
func TestParseSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want string // the whole error
	}{
		{"indented too little", "device: pi-07\nspool:\n  path: /x\n max_bytes: 1MiB\n",
			"c.yaml: line 4: did not find expected key"}, // the yaml package: line 3
		{"indented too much", "device: pi-07\nspool:\n  path: /x\n   max_bytes: 1MiB\n",
			"c.yaml: line 4: mapping values are not allowed in this context"},
		{"sensor key indented too much", "sensors:\n  - {name: a, driver: sim}\n  - name: b\n   driver: sim\n",
			"c.yaml: line 4: did not find expected '-' indicator"}, // the yaml package: line 1
		{"key under a list", "a: 1\nb:\n  - x\n  y: 2\n",
			"c.yaml: line 4: did not find expected '-' indicator"}, // the yaml package: line 2
		{"unclosed bracket", "device: pi-07\nspool: [unclosed\n",
			"c.yaml: line 2: did not find expected ',' or ']'"}, // the yaml package: line 1
		{"unclosed brace, no newline", "a: 1\nb: {c: 2",
			"c.yaml: line 2: did not find expected ',' or '}'"},
		{"unterminated quote", "a: 1\nb: 'unterminated\nc: 2\n",
			"c.yaml: line 2: found unexpected end of stream"},
		{"two colons on line 1", "a: b: c\n",
			"c.yaml: line 1: mapping values are not allowed in this context"}, // the yaml package: no line
		{"unknown anchor", "a: 1\nb: *nope\n",
			"c.yaml: line 2: unknown anchor 'nope' referenced"}, // the yaml package: no line
		{"tab indenting a key", "device: pi-07\nspool:\n\tpath: /x\n",
			"c.yaml: line 3: found character that cannot start any token (a tab: YAML indents with spaces only)"},
		{"tab after spaces", "device: pi-07\nspool:\n  path: /x\n  \tmax_bytes: 1MiB\n",
			"c.yaml: line 4: found a tab character that violates indentation (YAML indents with spaces only)"}, // the yaml package: line 3
		{"tab before a list item", "a:\n\t- x\n",
			"c.yaml: line 2: found character that cannot start any token (a tab: YAML indents with spaces only)"},
		{"second document", "a: 1\n---\nb: 2\n",
			"c.yaml: line 2: a second YAML document starts here; the configuration is one document"},
		{"error in a second document", "a: 1\n---\nb: [\n",
			"c.yaml: line 3: did not find expected node content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.src))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Parse(%q) error = %v; want %s", tc.src, err, tc.want)
			}
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 {
				t.Errorf("Parse(%q) error is %T; want one Problem", tc.src, err)
			}
		})
	}
}

func TestParseNoTabBlamedWithoutOne(t *testing.T) {
	// A tab inside a value is no indentation: the hint must not appear.
	_, err := Parse("c.yaml", []byte("a: \"x\ty\"\nb: [1,\n"))
	if err == nil || strings.Contains(err.Error(), "tab") {
		t.Errorf("Parse error = %v; want a syntax error that does not blame a tab", err)
	}
}

func TestParseGood(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n"} {
		if n, err := Parse("c.yaml", []byte(src)); n != nil || err != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil (no document)", src, n, err)
		}
	}
	n, err := Parse("c.yaml", []byte("a: &x 1\nb: *x\n"))
	if err != nil || n == nil || n.Kind != yaml.MappingNode || len(n.Content) != 4 {
		t.Fatalf("Parse = %v, %v; want the top mapping", n, err)
	}
	if v := Resolve(n.Content[3]); v.Value != "1" {
		t.Errorf("Resolve(*x) = %q; want the anchored 1", v.Value)
	}
}
