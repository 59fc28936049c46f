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
			`bad-sensors.yaml: line 5: sensors[1].name: missing`,
			`line 6: sensors[2] (a).name: "a" is already the name of sensors[0]`,
			`line 7: sensors[3]: must be a mapping`,
			`bad-sensors.yaml: line 8: sensors[4] (gh).address: "0x99" is not a valid`,
		}},
		{"bad-yaml.yaml", []string{"bad-yaml.yaml: line 2: did not find expected ',' or ']'"}},
		// The line of the mistake, not of the key above it.
		{"bad-indent.yaml", []string{"bad-indent.yaml: line 4: did not find expected key"}},
		{"bad-tab.yaml", []string{"bad-tab.yaml: line 3: found character that cannot start any token (a tab: YAML indents with spaces only)"}},
		// Every problem in one run: the duplicate name too, though its entry
		// names an unknown driver (whose keys, bus here, cannot be checked).
		{"bad-all-at-once.yaml", []string{
			`line 2: spool.polcy: unknown key (known here: commit_interval, max_age, max_bytes, path, policy)`,
			`line 6: sensors[1] (demo).driver: unknown driver "bme680" (known: ads1x15, aht20, bme280, bmp280, ds18b20, gpiocount, ina219, mcp9808, sim, thermal)`,
			`line 6: sensors[1] (demo).name: "demo" is already the name of sensors[0]`,
			`line 7: sensors[2] (soil).channels[0].input: "9" is not one of 0, 1, 2, 3, 0-1, 0-3, 1-3, 2-3`,
			`line 8: log.level: "loud" is not one of debug, info, warn, error`,
		}},
		// An unknown key lists the known ones, in every section.
		{"bad-unknown-keys.yaml", []string{
			"line 1: devices: unknown key (known here: device, log, sensors, spool, status, uplink)",
			"line 2: spool.paths: unknown key (known here: commit_interval, max_age, max_bytes, path, policy)",
			"line 4: uplink.kinds: unknown key (known here: batch, heartbeat, http, kind, mqtt, rate_limit)",
			"line 5: uplink.http.urls: unknown key (known here: ca_file, client_cert, client_key, token_file, url)",
			"line 6: uplink.mqtt.brokers: unknown key (known here: broker, ca_file, confirm, password_file, prefix, receipt_timeout, username)",
			"line 7: uplink.batch.max_reading: unknown key (known here: in_flight, max_bytes, max_readings)",
			"line 9: sensors[0] (a).serie: unknown key (known here: driver, dropout_rate, interval, name, seed, series, spike_rate)",
			"line 10: sensors[1] (b).channels[0].gain: unknown key (known here: input, name, offset, range, scale, unit)",
			"line 11: status.sockets: unknown key (known here: socket)",
			"line 12: log.levels: unknown key (known here: level)",
		}},
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
			if got, want := strings.Count(err.Error(), "\n")+1, len(tc.want); got != want {
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
	// aliases.yaml: written with each alias's value, or config check panics.
	for _, name := range []string{"full.yaml", "mqtt.yaml", "aliases.yaml"} {
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

// A token or password that would cross the network in clear is warned
// about (the daemon logs it at start, `outpost config check` prints it);
// TLS, loopback and no secret at all are not.
func TestConfigWarnsOfCleartextSecrets(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		uplink string
		want   string // in the warnings, "" for no cleartext warning
	}{
		{`{http: {url: "http://receiver.example.com:8080", token_file: SECRET}}`, "uplink.http.token_file is sent in clear to receiver.example.com:8080"},
		{`{http: {url: "http://192.168.1.5", token_file: SECRET}}`, "in clear to 192.168.1.5"},
		{`{http: {url: "HTTP://[2001:db8::1]:80", token_file: SECRET}}`, "in clear to [2001:db8::1]:80"},
		{`{http: {url: "https://receiver.example.com", token_file: SECRET}}`, ""},
		{`{http: {url: "http://127.0.0.1:8080", token_file: SECRET}}`, ""},
		{`{http: {url: "http://localhost:8080", token_file: SECRET}}`, ""},
		{`{http: {url: "http://[::1]:8080", token_file: SECRET}}`, ""},
		{`{http: {url: "http://receiver.example.com"}}`, ""},
		{`{kind: mqtt, mqtt: {broker: "tcp://broker.example.com:1883", username: pi-07, password_file: SECRET}}`, "uplink.mqtt.password_file is sent in clear to broker.example.com:1883 (tcp://)"},
		{`{kind: mqtt, mqtt: {broker: "mqtt://10.0.0.2:1883", username: pi-07, password_file: SECRET}}`, "in clear to 10.0.0.2:1883"},
		{`{kind: mqtt, mqtt: {broker: "ws://broker.example.com:8080", username: pi-07, password_file: SECRET}}`, "(ws://)"},
		{`{kind: mqtt, mqtt: {broker: "ssl://broker.example.com:8883", username: pi-07, password_file: SECRET}}`, ""},
		{`{kind: mqtt, mqtt: {broker: "wss://broker.example.com", username: pi-07, password_file: SECRET}}`, ""},
		{`{kind: mqtt, mqtt: {broker: "tcp://127.0.0.1:1883", username: pi-07, password_file: SECRET}}`, ""},
		{`{kind: mqtt, mqtt: {broker: "tcp://broker.example.com:1883"}}`, ""},
		// The other transport's secret is not sent at all.
		{`{kind: mqtt, http: {url: "http://receiver.example.com", token_file: SECRET}, mqtt: {broker: "ssl://b.example.com:8883"}}`, ""},
	}
	for _, tc := range tests {
		text := "device: pi-07\nuplink: " + strings.ReplaceAll(tc.uplink, "SECRET", secret) + "\n"
		cfg, err := Parse("t.yaml", []byte(text))
		if err != nil {
			t.Errorf("%s: %v", tc.uplink, err)
			continue
		}
		w := strings.Join(cfg.Warnings(), "\n")
		switch {
		case tc.want == "" && strings.Contains(w, "in clear"):
			t.Errorf("%s: warnings %q; want no cleartext warning", tc.uplink, w)
		case tc.want != "" && !strings.Contains(w, tc.want):
			t.Errorf("%s: warnings %q; want %q", tc.uplink, w, tc.want)
		}
	}
}
