package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
)

// FuzzParse: any file loads or yields its problems (each with a line, in
// line order), never a panic.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"full.yaml", "mqtt.yaml", "bad-values.yaml", "bad-sensors.yaml", "bad-indent.yaml", "bad-all-at-once.yaml", "bad-unknown-keys.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse = nil, nil")
			}
			return
		}
		var ps strictyaml.Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("Parse error = %v (%T); want Problems", err, err)
		}
		for i := 1; i < len(ps); i++ {
			if ps[i].Line < ps[i-1].Line {
				t.Fatalf("problems out of line order:\n%v", err)
			}
		}
	})
}
