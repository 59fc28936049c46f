package sampler

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
)

func decode(t *testing.T, src string) ([]SensorSpec, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return decodeNode(&n)
}

// decodeNode decodes a sensors list as the config does, with a decoder of
// its own.
func decodeNode(n *yaml.Node) ([]SensorSpec, error) {
	d := strictyaml.NewDecoder("")
	specs := DecodeSensors(d, "sensors", n)
	return specs, d.Err()
}

func TestDecodeGood(t *testing.T) {
	got, err := decode(t, `
- {name: greenhouse, driver: bme280, bus: "1", address: 0x76, interval: 10s}
- {name: demo, driver: sim, interval: 100ms, series: 4, seed: 1}
- name: soc
  driver: thermal
- name: tank
  driver: ds18b20
  interval: 30s
  probes: [28-0316a2795bff, 28-000005e2fdc3]
- name: soil
  driver: ads1x15
  bus: 1
  address: 0x49
  chip: ads1015
  interval: 1m
  channels:
    - {name: moisture, input: 0, scale: -62.5, offset: 175, unit: "%"}
    - {name: pressure, input: 1-3, range: 0.256, scale: 39.0625, unit: bar}
- {name: rain, driver: gpiocount, line: GPIO17, debounce: 5ms, scale: 0.2794, unit: mm, interval: 5m}
- {name: wind, driver: gpiocount, chip: gpiochip0, line: "27", edge: rising, pull: none, scale: 2.4, unit: km/h, rate_unit: km/h, interval: 10s}
- {name: baro, driver: bmp280, bus: 1, address: 0x77}
- {name: room, driver: aht20, bus: 1, interval: 10s}
- {name: probe, driver: mcp9808, bus: 1, address: 0x1a}
- {name: solar, driver: ina219, bus: 1, address: 0x45, shunt_ohms: 0.01, max_current: 10}
`)
	if err != nil {
		t.Fatalf("DecodeSensors error = %v", err)
	}
	want := []struct {
		name, driver string
		interval     time.Duration
		line         int
	}{
		{"greenhouse", "bme280", 10 * time.Second, 2},
		{"demo", "sim", 100 * time.Millisecond, 3},
		{"soc", "thermal", DefaultInterval, 4},
		{"tank", "ds18b20", 30 * time.Second, 6},
		{"soil", "ads1x15", time.Minute, 10},
		{"rain", "gpiocount", 5 * time.Minute, 19},
		{"wind", "gpiocount", 10 * time.Second, 20},
		{"baro", "bmp280", DefaultInterval, 21},
		{"room", "aht20", 10 * time.Second, 22},
		{"probe", "mcp9808", DefaultInterval, 23},
		{"solar", "ina219", DefaultInterval, 24},
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d sensors; want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.name || g.Driver != w.driver || g.Interval != w.interval || g.Line != w.line {
			t.Errorf("sensor %d = %s %s %v line %d; want %s %s %v line %d", i, g.Name, g.Driver, g.Interval, g.Line, w.name, w.driver, w.interval, w.line)
		}
	}
	if o := got[0].opts.(*bme280Opts); o.bus != "1" || o.addr != 0x76 {
		t.Errorf("greenhouse opts = %+v", o)
	}
	if o := got[1].opts.(*simOpts); o.series != 4 || o.seed != 1 {
		t.Errorf("demo opts = %+v", o)
	}
	if o := got[3].opts.(*ds18b20Opts); len(o.ids) != 2 || o.names["28-000005e2fdc3"] != "28-000005e2fdc3" {
		t.Errorf("tank opts = %+v", o)
	}
	o := got[4].opts.(*ads1x15Opts)
	if o.addr != 0x49 || o.chip != "ads1015" || len(o.chans) != 2 || o.chans[0].Scale != -62.5 || o.chans[0].Offset != 175 || o.chans[1].Range != 0.256 || o.chans[1].Unit != "bar" {
		t.Errorf("soil opts = %+v", o)
	}
	if g := got[5].opts.(*gpiocountOpts); g.opts.Debounce != 5*time.Millisecond || g.opts.Scale != 0.2794 || g.unit != "mm" || g.rateUnit != "mm/s" {
		t.Errorf("rain opts = %+v", g)
	}
	if o := got[9].opts.(*mcp9808Opts); o.addr != 0x1a {
		t.Errorf("probe opts = %+v", o)
	}
	if o := got[10].opts.(*ina219Opts); o.addr != 0x45 || o.opts.ShuntOhms != 0.01 || o.opts.MaxCurrent != 10 {
		t.Errorf("solar opts = %+v", o)
	}
	if g := got[6].opts.(*gpiocountOpts); g.chip != "gpiochip0" || g.line != "27" || g.rateUnit != "km/h" {
		t.Errorf("wind opts = %+v", g)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // each must appear in the error
	}{
		{"bad address", `
- {name: demo, driver: sim}
- name: greenhouse
  driver: bme280
  bus: "1"
  address: 0x99`, []string{`line 6: sensors[1] (greenhouse).address: "0x99" is not a valid BME280 address (want 0x76 or 0x77)`}},
		{"missing bus", `[{name: g, driver: bme280}]`, []string{"line 1: sensors[0] (g).bus: missing"}},
		{"bad bus", `[{name: g, driver: bmp280, bus: i2c-one}]`, []string{`line 1: sensors[0] (g).bus: "i2c-one" is not an I²C bus number`}},
		{"unknown key", "- name: d\n  driver: sim\n  serie: 4\n", []string{"line 3: sensors[0] (d).serie: unknown key (known here: driver, dropout_rate, interval, name, seed, series, spike_rate)"}},
		{"unknown driver", `[{name: d, driver: bme680}]`, []string{`driver: unknown driver "bme680"`, "known: ads1x15, aht20, bme280, bmp280, ds18b20, gpiocount, ina219, mcp9808, sim, thermal"}},
		{"bad duration", `[{name: d, driver: sim, interval: 10}]`, []string{`interval: "10" needs a unit, e.g. 10s`}},
		{"negative duration", `[{name: d, driver: sim, interval: -1s}]`, []string{`interval: "-1s" must not be negative`}},
		{"interval below minimum", `[{name: t, driver: ds18b20, interval: 100ms}]`, []string{"interval: 100ms is below the ds18b20 driver's minimum of 1s"}},
		{"sim minimum", `[{name: d, driver: sim, interval: 500us}]`, []string{"interval: 500µs is below the sim driver's minimum of 1ms"}},
		{"missing name", `[{driver: sim}]`, []string{"line 1: sensors[0].name: missing"}},
		{"bad name", `[{name: "green house", driver: sim}]`, []string{`character ' ' is not one of`}},
		{"duplicate name", "- {name: d, driver: sim}\n- {name: d, driver: sim}", []string{`line 2: sensors[1] (d).name: "d" is already the name of sensors[0]`}},
		{"not a mapping", `[sim]`, []string{"line 1: sensors[0]: must be a mapping such as {name: demo, driver: sim, interval: 1s}"}},
		{"not a list", `{name: d}`, []string{"line 1: sensors: must be a list of sensors"}},
		{"series", `[{name: d, driver: sim, series: 0}]`, []string{`series: "0" is not a whole number from 1 to 10000`}},
		{"rate", `[{name: d, driver: sim, spike_rate: 2}]`, []string{"spike_rate: 2 is not a probability"}},
		{"probe id", `[{name: t, driver: ds18b20, probes: [28-xyz]}]`, []string{`probes: "28-xyz" is not a 1-Wire id`}},
		{"ads address", `[{name: a, driver: ads1x15, bus: 1, address: 0x50, channels: [{name: x, input: 0}]}]`, []string{`address: "0x50" is not a valid ADS1x15 address`}},
		{"ads channels", `[{name: a, driver: ads1x15, bus: 1}]`, []string{"channels: must be a list"}},
		{"ads channel", "- name: a\n  driver: ads1x15\n  bus: 1\n  channels:\n    - {name: x, input: 4, range: 5, gain: 2}\n", []string{
			`line 5: sensors[0] (a).channels[0].input: "4" is not one of`,
			"line 5: sensors[0] (a).channels[0].range: 5 V is not one of",
			"line 5: sensors[0] (a).channels[0].gain: unknown key (known here: input, name, offset, range, scale, unit)",
		}},
		{"ads chip", `[{name: a, driver: ads1x15, bus: 1, chip: ads1118, channels: [{name: x, input: 0}]}]`, []string{`chip: "ads1118" is not one of ads1115, ads1015`}},
		{"gpio", `[{name: r, driver: gpiocount, edge: up, debounce: 2s, scale: 0}]`, []string{"line: missing", `edge: "up" is not one of`, "debounce: 2s is longer than a second", "scale: must not be 0"}},
		{"aht20 address", `[{name: r, driver: aht20, bus: 1, address: 0x38}]`, []string{"line 1: sensors[0] (r).address: unknown key (known here: bus, driver, interval, name)"}},
		{"mcp9808 address", `[{name: r, driver: mcp9808, bus: 1, address: 0x20}]`, []string{`address: "0x20" is not a valid MCP9808 address (want 0x18 to 0x1f)`}},
		{"ina219 shunt", `[{name: r, driver: ina219, bus: 1, shunt_ohms: 0}]`, []string{"shunt_ohms: must be > 0"}},
		{"long channel name", "[{name: " + strings.Repeat("s", 64) + ", driver: ads1x15, bus: 1, channels: [{name: " + strings.Repeat("c", 64) + ", input: 0}]}]", []string{"129 bytes long, over the limit of 128"}},
		{"bad probe alias", `[{name: t, driver: ds18b20, probes: {"a b": 28-0316a2795bff}}]`, []string{`probes: "a b": character ' '`}},
		{"twice", "- name: d\n  driver: sim\n  name: e\n", []string{"line 3: sensors[0] (d).name: given twice"}},
		{"list value", `[{name: d, driver: sim, seed: [1]}]`, []string{"seed: must be a single value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(t, tc.src)
			if err == nil {
				t.Fatalf("DecodeSensors(%q) error = nil; want %q", tc.src, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("DecodeSensors error =\n%v\nwant it to contain\n%s", err, w)
				}
			}
		})
	}
}

func TestDecodeAliases(t *testing.T) {
	got, err := decode(t, `
- {name: a, driver: bme280, bus: &bus "1", address: &addr 0x77}
- {name: b, driver: bmp280, bus: *bus, address: *addr}
- &probe {name: c, driver: ds18b20, probes: [&id 28-0316a2795bff]}
- {name: d, driver: ds18b20, probes: {soil: *id}}
`)
	if err != nil {
		t.Fatalf("DecodeSensors error = %v", err)
	}
	if o := got[1].opts.(*bme280Opts); o.bus != "1" || o.addr != 0x77 {
		t.Errorf("b opts = %+v; want the anchored bus and address", o)
	}
	if o := got[3].opts.(*ds18b20Opts); o.names["28-0316a2795bff"] != "soil" {
		t.Errorf("d opts = %+v", o)
	}
}

func TestDecodeReportsAllAtOnce(t *testing.T) {
	_, err := decode(t, `
- {name: a, driver: sim, series: -1}
- {name: b, driver: bme280, address: 0x10}
- {name: c, driver: nope}
- {name: a, driver: nope}
`)
	if err == nil {
		t.Fatal("error = nil")
	}
	for _, w := range []string{"line 2: sensors[0] (a).series", "line 3: sensors[1] (b).bus: missing", "line 3: sensors[1] (b).address", "line 4: sensors[2] (c).driver",
		`line 5: sensors[3] (a).name: "a" is already the name of sensors[0]`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error =\n%v\nwant it to contain %q", err, w)
		}
	}
}

// An unknown key lists the keys of its entry: the common ones and the
// driver's own, for every driver.
func TestDecodeUnknownKeyListsDriverKeys(t *testing.T) {
	for _, tc := range []struct{ driver, required, known string }{
		{"sim", "", "driver, dropout_rate, interval, name, seed, series, spike_rate"},
		{"thermal", "", "driver, interval, name, zone"},
		{"bme280", "bus: 1", "address, bus, driver, interval, name"},
		{"bmp280", "bus: 1", "address, bus, driver, interval, name"},
		{"ds18b20", "", "driver, interval, name, probes"},
		{"ads1x15", "bus: 1, channels: [{name: v, input: 0}]", "address, bus, channels, chip, driver, interval, name"},
		{"gpiocount", "line: GPIO17", "chip, debounce, driver, edge, interval, line, name, pull, rate_unit, scale, unit"},
		{"aht20", "bus: 1", "bus, driver, interval, name"},
		{"mcp9808", "bus: 1", "address, bus, driver, interval, name"},
		{"ina219", "bus: 1", "address, bus, driver, interval, max_current, name, shunt_ohms"},
	} {
		_, err := decode(t, "[{name: x, driver: "+tc.driver+", colour: red, "+tc.required+"}]")
		want := "line 1: sensors[0] (x).colour: unknown key (known here: " + tc.known + ")"
		if err == nil || err.Error() != want {
			t.Errorf("driver %s: error =\n%v\nwant\n%s", tc.driver, err, want)
		}
	}
	if n := len(driverNames()); n != 10 {
		t.Errorf("%d drivers; this test knows the keys of 10: add the new one", n)
	}
}
