package sampler

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzDecodeSensors: any YAML decodes to specs or to errors, never a
// panic, and every decoded spec opens its driver's options.
func FuzzDecodeSensors(f *testing.F) {
	for _, s := range []string{
		`[{name: greenhouse, driver: bme280, bus: "1", address: 0x76, interval: 10s}]`,
		`[{name: demo, driver: sim, interval: 100ms, series: 4, seed: 1}]`,
		`[{name: t, driver: ds18b20, probes: {a: 28-0316a2795bff}}]`,
		`[{name: a, driver: ads1x15, bus: 1, channels: [{name: x, input: 0-1, range: 0.256}]}]`,
		`[{name: r, driver: gpiocount, line: GPIO17, debounce: 5ms}]`,
		`[&a {name: x, driver: sim}, *a]`,
		`[{name: i, driver: ina219, bus: 1, shunt_ohms: 0.01}]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		var n yaml.Node
		if yaml.Unmarshal([]byte(src), &n) != nil || len(n.Content) == 0 {
			return
		}
		specs, err := decodeNode(&n)
		if err != nil {
			return
		}
		for _, s := range specs {
			d, ok := drivers[s.Driver]
			if !ok || s.opts == nil || s.Interval < d.minInterval || validName(s.Name) != nil {
				t.Fatalf("decoded spec %+v is not valid", s)
			}
		}
	})
}
