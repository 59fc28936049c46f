package strictyaml

import (
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzParse: any input parses or yields one syntax problem, never a
// panic; the problem's line is a line of the input, and input the yaml
// package reads as one document is accepted.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"device: pi-07\nspool:\n  path: /x\n max_bytes: 1MiB\n",
		"device: pi-07\nspool:\n\tpath: /x\n",
		"sensors:\n  - {name: a, driver: sim}\n  - name: b\n   driver: sim\n",
		"a: 1\nb: 'unterminated\nc: 2\n",
		"a: &x [*x]\n",
		"a: 1\n---\nb: [\n",
		"a: b: c",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("f.yaml", data)
		if err == nil {
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) != 1 {
			t.Fatalf("Parse error = %v (%T); want one Problem", err, err)
		}
		if lines := len(lineEnds(data)) + 1; utf8.Valid(data) && ps[0].Line > lines {
			t.Fatalf("Parse(%q) names line %d of %d", data, ps[0].Line, lines)
		}
		if parseAll(data) == nil && ps[0].Path == "" && ps[0].Msg != "a second YAML document starts here; the configuration is one document" {
			t.Fatalf("Parse(%q) = %v; the yaml package reads it", data, err)
		}
	})
}
