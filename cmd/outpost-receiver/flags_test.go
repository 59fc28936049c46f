package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/logbuf"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver"
)

// serveConfigOf parses args and env as run does and returns serve's config.
func serveConfigOf(t *testing.T, env map[string]string, args ...string) (receiver.Config, error) {
	t.Helper()
	getenv := func(k string) string { return env[k] }
	fs, f := newFlagSet(getenv, io.Discard)
	if _, err := parse(fs, args); err != nil {
		return receiver.Config{}, err
	}
	if err := f.applyEnv(fs, getenv); err != nil {
		return receiver.Config{}, err
	}
	return f.serveConfig()
}

func secretFile(t *testing.T, mode os.FileMode, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mqtt-password")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	return p
}

func TestServeFlagDefaults(t *testing.T) {
	cfg, err := serveConfigOf(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	want := receiver.Config{Listen: "127.0.0.1:8080", MaxBodyBytes: 8 << 20, MaxDecodedBytes: 32 << 20, MaxLineBytes: 16 << 10,
		MaxLines: 20_000, MQTTClientID: "outpost-receiver-" + host, MQTTPrefix: "outpost", MQTTGroup: "outpost-receiver"}
	if fmt.Sprint(cfg) != fmt.Sprint(want) {
		t.Errorf("defaults = %+v\n\twant %+v", cfg, want)
	}
}

func TestServeFlagsAndEnv(t *testing.T) {
	pw := secretFile(t, 0o640, "  s3cret-pass\n")
	env := map[string]string{
		"OUTPOST_MAX_BODY_BYTES": "1MiB", "OUTPOST_MAX_DECODED_BYTES": "4mib", "OUTPOST_MAX_LINE_BYTES": "1024",
		"OUTPOST_MAX_LINES": "500", "OUTPOST_MQTT_BROKER": "tcp://user@127.0.0.1:1883", "OUTPOST_MQTT_GROUP": "g1",
		"OUTPOST_MQTT_PREFIX": "site/outpost", "OUTPOST_MQTT_CLIENT_ID": "rx-1", "OUTPOST_MQTT_USERNAME": "receiver",
		"OUTPOST_MQTT_PASSWORD_FILE": pw,
	}
	cfg, err := serveConfigOf(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBodyBytes != 1<<20 || cfg.MaxDecodedBytes != 4<<20 || cfg.MaxLineBytes != 1024 || cfg.MaxLines != 500 ||
		cfg.MQTTGroup != "g1" || cfg.MQTTPrefix != "site/outpost" || cfg.MQTTClientID != "rx-1" ||
		cfg.MQTTUsername != "receiver" || cfg.MQTTPassword != "s3cret-pass" {
		t.Errorf("from the environment: %+v", cfg)
	}
	// A flag wins over its environment variable, wherever it stands.
	cfg, err = serveConfigOf(t, env, "--max-line-bytes", "2KiB", "serve", "--mqtt-group=g2", "--max-lines", "7")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxLineBytes != 2048 || cfg.MQTTGroup != "g2" || cfg.MaxLines != 7 || cfg.MaxBodyBytes != 1<<20 {
		t.Errorf("flags over the environment: %+v", cfg)
	}
	// A flag's bad environment value is not read when the flag is given.
	env["OUTPOST_MAX_LINES"] = "lots"
	if _, err := serveConfigOf(t, env, "--max-lines", "9"); err != nil {
		t.Errorf("bad OUTPOST_MAX_LINES overridden by --max-lines: %v", err)
	}
}

func TestRetentionFlag(t *testing.T) {
	for v, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "720h": 720 * time.Hour, "0": 0, "0d": 0} {
		cfg, err := serveConfigOf(t, nil, "--retention", v)
		if err != nil || cfg.Retention != want {
			t.Errorf("--retention %s = %v, %v; want %v", v, cfg.Retention, err, want)
		}
	}
}

// TestAdminTokenFileMode: the admin token's file is checked as the MQTT
// password's is: 0600 and 0640 are taken, a file others may read or
// write is refused.
func TestAdminTokenFileMode(t *testing.T) {
	for _, c := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o640, true}, {0o400, true}, {0o644, false}, {0o602, false}, {0o666, false}} {
		p := secretFile(t, c.mode, "admin-token-of-sixteen-or-more\n")
		_, err := serveConfigOf(t, nil, "--admin-token-file", p)
		if (err == nil) != c.ok {
			t.Errorf("--admin-token-file of mode %04o: error = %v; want ok = %v", c.mode, err, c.ok)
		}
	}
}

func TestServeFlagErrors(t *testing.T) {
	open := secretFile(t, 0o644, "s3cret-pass")
	good := secretFile(t, 0o600, "s3cret-pass")
	empty := secretFile(t, 0o600, "\n")
	adminOpen := secretFile(t, 0o604, "s3cret-pass-admin-token")
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{"bad size flag", nil, []string{"--max-body-bytes", "12XB"}, `invalid value "12XB" for flag -max-body-bytes: want a size such as 16384, 512KiB or 8MiB`},
		{"bad size env", map[string]string{"OUTPOST_MAX_DECODED_BYTES": "-1"}, nil,
			`invalid value "-1" of OUTPOST_MAX_DECODED_BYTES for flag --max-decoded-bytes: want a size`},
		{"bad count env", map[string]string{"OUTPOST_MAX_LINES": "lots"}, nil,
			`invalid value "lots" of OUTPOST_MAX_LINES for flag --max-lines: want a whole number from 1 to 10000000`},
		{"zero lines", nil, []string{"--max-lines", "0"}, `flag -max-lines: want a whole number`},
		{"tiny body", nil, []string{"--max-body-bytes", "100"}, `--max-body-bytes: 100 is below the minimum of 1KiB`},
		{"decoded below body", nil, []string{"--max-body-bytes", "8MiB", "--max-decoded-bytes", "1MiB"},
			`--max-decoded-bytes: 1MiB is below --max-body-bytes (8MiB)`},
		{"tiny line", nil, []string{"--max-line-bytes", "100"}, `--max-line-bytes: 100 is below the minimum of 256 bytes`},
		{"line above decoded", nil, []string{"--max-body-bytes", "1KiB", "--max-decoded-bytes", "2KiB", "--max-line-bytes", "4KiB"},
			`--max-line-bytes: 4KiB is above --max-decoded-bytes (2KiB)`},
		{"password in broker URL", nil, []string{"--mqtt-broker", "tcp://rx:hunter2@127.0.0.1:1883"},
			`--mqtt-broker: the URL carries a password; put it in a file named by --mqtt-password-file instead`},
		{"broker not a URL", nil, []string{"--mqtt-broker", "127.0.0.1:1883"}, `--mqtt-broker:`},
		{"wildcard prefix", nil, []string{"--mqtt-prefix", "outpost/#"}, `--mqtt-prefix: "outpost/#" holds an MQTT wildcard`},
		{"empty level prefix", nil, []string{"--mqtt-prefix", "outpost/"}, `--mqtt-prefix: "outpost/" has an empty topic level`},
		{"group with a slash", map[string]string{"OUTPOST_MQTT_GROUP": "a/b"}, nil, `--mqtt-group: "a/b" holds a /`},
		{"empty client id", nil, []string{"--mqtt-client-id", ""}, `--mqtt-client-id: ""`},
		{"password without user", nil, []string{"--mqtt-password-file", good}, `--mqtt-password-file needs --mqtt-username`},
		{"password file readable by others", nil, []string{"--mqtt-username", "rx", "--mqtt-password-file", open},
			`--mqtt-password-file: ` + open + ` has mode 0644, readable or writable by others`},
		{"password file missing", nil, []string{"--mqtt-username", "rx", "--mqtt-password-file", "/nonexistent/pw"},
			`--mqtt-password-file: open /nonexistent/pw: no such file or directory`},
		{"password file empty", nil, []string{"--mqtt-username", "rx", "--mqtt-password-file", empty}, `--mqtt-password-file: ` + empty + ` is empty`},
		{"admin token file readable by others", nil, []string{"--admin-token-file", adminOpen},
			`--admin-token-file: read admin token: ` + adminOpen + ` has mode 0604, readable or writable by others`},
		{"admin token file from the environment, open", map[string]string{"OUTPOST_ADMIN_TOKEN_FILE": adminOpen}, nil,
			`--admin-token-file: read admin token: ` + adminOpen + ` has mode 0604`},
		{"negative retention", nil, []string{"--retention", "-1h"}, `--retention: -1h0m0s is negative`},
		{"short retention", nil, []string{"--retention", "10m"}, `--retention: 10m0s is below the minimum of 1h`},
		{"bad retention env", map[string]string{"OUTPOST_RETENTION": "forever"}, nil, `invalid value "forever" of OUTPOST_RETENTION for flag --retention: want a duration`},
		{"admin token too short", nil, []string{"--admin-token-file", good}, `--admin-token-file: admin token in ` + good + `: shorter than 16 characters`},
	} {
		_, err := serveConfigOf(t, c.env, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, errUsage) {
			t.Errorf("%s: error = %v\n\twant a usage error containing %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret-pass") {
			t.Errorf("%s: the error shows the password: %v", c.name, err)
		}
	}
}

// serveT runs serve in the background until the test ends and returns its
// HTTP address and log.
func serveT(t *testing.T, env map[string]string, args ...string) (string, *logbuf.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var stderr logbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(k string) string { return env[k] }, io.Discard, &stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, stderr.String())
		}
	})
	addr := regexp.MustCompile(`"receiver listening" addr=(\S+)`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := addr.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], &stderr
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve ended: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not listening after 30s:\n%s", stderr.String())
		}
	}
}

// TestServeLimits sets each limit low through a flag or its environment
// variable and checks that the running server answers with the documented
// status: 413 for the body, the decompressed size and the line count, 400
// naming the line for a line too long.
func TestServeLimits(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
	token, _, err := runT(t, nil, "device", "add", "pi-07", "--database-url", db)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": db, "OUTPOST_LISTEN": "127.0.0.1:0", "OUTPOST_MAX_LINE_BYTES": "300"}
	addr, log := serveT(t, env, "--max-body-bytes", "2KiB", "--max-decoded-bytes", "4KiB", "--max-lines", "20")
	if !strings.Contains(log.String(), "max_body_bytes=2048 max_decoded_bytes=4096 max_line_bytes=300 max_lines=20") {
		t.Errorf("serve log does not show the limits:\n%s", log)
	}
	line := func(seq int, extra string) string {
		return fmt.Sprintf(`{"device":"pi-07","stream":"9f3c2a71d04b88e1","seq":%d,"sensor":"t","value":21.5,"unit":"C","timestamp":"2026-11-22T10:00:00.123Z"%s}`+"\n", seq, extra)
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	// 16 lines of 284 bytes: 4.5 KiB, each line and the line count within
	// their limits, in a few hundred bytes of gzip.
	var long, many strings.Builder
	for i := range 16 {
		long.WriteString(line(100+i, `,"labels":{"note":"`+strings.Repeat("x", 130)+`"}`))
	}
	for i := range 21 { // 2.8 KiB, under 2 KiB gzipped
		many.WriteString(line(200+i, ""))
	}
	for _, c := range []struct {
		name     string
		body     []byte
		encoding string
		status   int
		want     string
	}{
		{"within the limits", []byte(line(1, "") + line(2, "")), "", 200, `{"accepted":2,"duplicates":0,"conflicts":0,"corrected":0}`},
		{"body over --max-body-bytes", bytes.Repeat([]byte("\n"), 2049), "", 413, `{"error":"body larger than 2048 bytes: split the batch"}`},
		{"gzip over --max-decoded-bytes", gz(long.String()), "gzip", 413, `{"error":"decompressed body larger than 4096 bytes: split the batch"}`},
		{"line over OUTPOST_MAX_LINE_BYTES", []byte(line(3, "") + line(4, `,"labels":{"note":"`+strings.Repeat("x", 200)+`"}`)), "", 400,
			`{"error":"line 2: line too long: more than 300 bytes","line":2}`},
		{"lines over --max-lines", gz(many.String()), "gzip", 413, `{"error":"line 21: too many lines in batch: more than 20","line":21}`},
	} {
		r, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+addr+"/v1/readings", bytes.NewReader(c.body))
		r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
		r.Header.Set("Content-Type", "application/x-ndjson")
		if c.encoding != "" {
			r.Header.Set("Content-Encoding", c.encoding)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strings.TrimSpace(string(b)); resp.StatusCode != c.status || got != c.want {
			t.Errorf("%s: got %d %s\n\twant %d %s", c.name, resp.StatusCode, got, c.status, c.want)
		}
	}
}

// TestServeMQTTPasswordFile logs in to a broker that requires a password,
// read from --mqtt-password-file, and never shows it in the log.
func TestServeMQTTPasswordFile(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Mosquitto (skipped with -short)")
	}
	const pass = "s3cret-pass-of-the-receiver"
	mq := testserver.StartMosquitto(t, testserver.MosquittoOptions{Users: map[string]string{"receiver": pass}})
	pw := secretFile(t, 0o600, pass+"\n")
	env := map[string]string{"DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "r.db"), "OUTPOST_LISTEN": "127.0.0.1:0",
		"OUTPOST_MQTT_PASSWORD_FILE": pw}
	_, log := serveT(t, env, "--mqtt-broker", mq.URL(), "--mqtt-username", "receiver", "--mqtt-client-id", "rx-pw",
		"--mqtt-group", "grp", "--mqtt-prefix", "site")
	if !strings.Contains(log.String(), "filter=$share/grp/site/+/readings") {
		t.Errorf("log lacks the subscription to $share/grp/site/+/readings:\n%s", log)
	}
	if strings.Contains(log.String(), pass) {
		t.Errorf("the log shows the MQTT password:\n%s", log)
	}
}

// TestServeSizeFlags: the size flags read a size as the edge's config
// does (reading.ParseSize: 1.5GiB, 64KB), the unit in any case, up to
// 1TiB.
func TestServeSizeFlags(t *testing.T) {
	cfg, err := serveConfigOf(t, map[string]string{"OUTPOST_MAX_DECODED_BYTES": "1.5GiB"}, "--max-body-bytes", "64KB", "--max-line-bytes", "2kib")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxDecodedBytes != 3<<29 || cfg.MaxBodyBytes != 64000 || cfg.MaxLineBytes != 2048 {
		t.Errorf("sizes = %d, %d, %d; want 1.5GiB, 64000, 2048", cfg.MaxDecodedBytes, cfg.MaxBodyBytes, cfg.MaxLineBytes)
	}
	for _, v := range []string{"1025GiB", "NaN", "-1KiB", "1TB"} {
		if _, err := serveConfigOf(t, nil, "--max-decoded-bytes", v); err == nil || !strings.Contains(err.Error(), "want a size") {
			t.Errorf("--max-decoded-bytes %s: error = %v; want a size error", v, err)
		}
	}
}
