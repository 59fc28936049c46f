package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/daemon/sampler"
	"github.com/outpost-iot/outpost/internal/reading"
)

// loadTestdata reads testdata/name, with TOKEN replaced by the path
// of a secret file of the given mode.
func loadTestdata(t *testing.T, name string, tokenMode os.FileMode) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("secret-token\n"), tokenMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(token, tokenMode); err != nil { // umask-proof
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("TOKEN"), []byte(token))
	return Parse(name, data)
}

func TestConfigDesignExample(t *testing.T) {
	cfg, err := loadTestdata(t, "full.yaml", 0o640)
	if err != nil {
		t.Fatalf("Parse(full.yaml) = %v", err)
	}
	if cfg.Device != "pi-07" || cfg.Spool.MaxBytes != 512*reading.MiB || cfg.Spool.CommitInterval != time.Second ||
		cfg.Uplink.Batch.MaxBytes != 256*reading.KiB || cfg.Uplink.HTTP.URL != "https://receiver.example.com" {
		t.Errorf("Parse(full.yaml) = %+v", cfg)
	}
	if len(cfg.Sensors) != 2 || cfg.Sensors[0].Name != "greenhouse" || cfg.Sensors[1].Name != "demo" || cfg.Sensors[1].Node.Line != 16 {
		t.Errorf("sensors = %+v; want greenhouse, demo (line 16)", cfg.Sensors)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadTestdata(t, "mqtt.yaml", 0o600)
	if err != nil {
		t.Fatalf("Parse(mqtt.yaml) = %v", err)
	}
	want := Defaults()
	want.Device = "pi-08"
	want.Uplink.Kind = "mqtt"
	want.Uplink.MQTT = MQTT{Broker: "tls://broker.example.com:8883", Username: "pi-08",
		PasswordFile: cfg.Uplink.MQTT.PasswordFile, Prefix: "farm", Confirm: "broker", ReceiptTimeout: 30 * time.Second}
	want.Spool.MaxBytes = 64 * reading.MiB
	want.Spool.CommitInterval = 0
	want.Spool.Policy = "reject_new"
	want.Spool.MaxAge = 168 * time.Hour
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("Parse(mqtt.yaml) =\n%+v\nwant\n%+v", *cfg, want)
	}
}

func TestConfigErrorsNameLineAndKey(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must appear in the error
	}{
		{"bad-unknown-key.yaml", []string{"line 4: spool.max_byte: unknown key (known here: commit_interval, max_age, max_bytes, path, policy)"}},
		{"bad-values.yaml", []string{
			`line 1: device: "pi 07"`,
			`line 3: spool.commit_interval: "10" needs a unit, e.g. 10s`,
			`line 4: spool.max_bytes: "12 parsecs" is not a size`,
			`line 5: spool.policy: "drop_newest" is not one of drop_oldest, reject_new`,
			`line 9: uplink.http.url: ftp://x is not a URL`,
			`line 10: uplink.batch.in_flight: "0" is not a whole number from 1 to 64`,
			`line 11: uplink.heartbeat: "soon" is not a duration`,
			`line 12: log.level: "verbose" is not one of debug, info, warn, error`,
		}},
		{"bad-sensors.yaml", []string{
			`bad-sensors.yaml: sensors[1]: line 5: name: missing`,
			`line 6: sensors[2].name: "a" is already the name of sensors[0]`,
			`line 7: sensors[3]: must be a mapping`,
			`bad-sensors.yaml: sensors[4] (gh): line 8: address: 0x99 is not a valid`,
		}},
		{"bad-yaml.yaml", []string{"bad-yaml.yaml: yaml: line"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := loadTestdata(t, tc.file, 0o640)
			if err == nil {
				t.Fatalf("Parse(%s) = nil; want errors", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%s) error\n%v\ndoes not contain %q", tc.file, err, w)
				}
			}
			if got, want := strings.Count(err.Error(), "\n")+1, len(tc.want); tc.file != "bad-yaml.yaml" && got != want {
				t.Errorf("Parse(%s) reported %d problems; want %d:\n%v", tc.file, got, want, err)
			}
		})
	}
}

func TestConfigSecretFiles(t *testing.T) {
	_, err := loadTestdata(t, "full.yaml", 0o644)
	if err == nil || !strings.Contains(err.Error(), "line 10: uplink.http.token_file:") || !strings.Contains(err.Error(), "accessible by others (mode 0644)") {
		t.Errorf("world-readable token file: error = %v; want one naming uplink.http.token_file, line 10 and the mode", err)
	}
	data := []byte("uplink: {http: {url: 'http://127.0.0.1:1', token_file: /nonexistent/token}}\n")
	_, err = Parse("c.yaml", data)
	if err == nil || !strings.Contains(err.Error(), "c.yaml: line 1: uplink.http.token_file: stat /nonexistent/token: no such file") {
		t.Errorf("missing token file: error = %v", err)
	}
	data = []byte("uplink: {http: {url: 'https://user:hunter2@example.com'}}\n")
	_, err = Parse("c.yaml", data)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "carries a password") {
		t.Errorf("password in URL: error = %v; want it refused without echoing the password", err)
	}
}

func TestConfigWriteYAMLRoundTrip(t *testing.T) {
	for _, name := range []string{"full.yaml", "mqtt.yaml"} {
		cfg, err := loadTestdata(t, name, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := cfg.WriteYAML(&buf); err != nil {
			t.Fatal(err)
		}
		back, err := Parse("effective.yaml", buf.Bytes())
		if err != nil {
			t.Fatalf("%s: the effective config does not load back: %v\n%s", name, err, buf.String())
		}
		for i := range back.Sensors { // nodes and specs differ in lines; compare the rest
			b, c := back.Sensors[i].Spec, cfg.Sensors[i].Spec
			if b.Name != c.Name || b.Driver != c.Driver || b.Interval != c.Interval {
				t.Errorf("%s: sensor %d round trip = %+v; want %+v", name, i, b, c)
			}
			back.Sensors[i].Node, cfg.Sensors[i].Node = nil, nil
			back.Sensors[i].Spec, cfg.Sensors[i].Spec = sampler.SensorSpec{}, sampler.SensorSpec{}
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Errorf("%s: round trip through WriteYAML =\n%+v\nwant\n%+v\n%s", name, back, cfg, buf.String())
		}
	}
}

func TestConfigWarnings(t *testing.T) {
	cfg, err := Parse("min.yaml", []byte("device: pi-07\n"))
	if err != nil {
		t.Fatalf("a config with only a device = %v; want valid (it spools until an uplink is set)", err)
	}
	w := strings.Join(cfg.Warnings(), "\n")
	if cfg.UplinkConfigured() || !strings.Contains(w, "uplink.http.url is not set") || !strings.Contains(w, "sensors is empty") {
		t.Errorf("warnings = %q; want the missing uplink and sensors named", w)
	}
	cfg, err = loadTestdata(t, "full.yaml", 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.UplinkConfigured() || len(cfg.Warnings()) != 0 {
		t.Errorf("full.yaml warnings = %v; want none", cfg.Warnings())
	}
}
