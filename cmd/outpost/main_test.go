package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errOut, nil); err != nil {
		t.Fatalf("run(version) = %v", err)
	}
	want := "outpost " + version + " " + runtime.GOOS + "/" + runtime.GOARCH
	if !strings.HasPrefix(out.String(), want) {
		t.Errorf("run(version) printed %q; want prefix %q", out.String(), want)
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, &out, &errOut, nil)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `"frobnicate"`) {
		t.Errorf("run(frobnicate) = %v; want a usage error naming the command", err)
	}
	if !strings.Contains(errOut.String(), "Usage: outpost") {
		t.Errorf("run(frobnicate) stderr = %q; want the usage text", errOut.String())
	}
	if err := run(context.Background(), nil, &out, &errOut, nil); !errors.Is(err, errUsage) {
		t.Errorf("run() = %v; want a usage error", err)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("device: pi-07\nuplink: {http: {url: 'http://127.0.0.1:8080'}}\n"), 0o644)
	os.WriteFile(bad, []byte("device: pi-07\nspool:\n  max_bytes: lots\n"), 0o644)

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "--config", good}, &out, &errOut, nil); err != nil {
		t.Fatalf("config check good.yaml = %v", err)
	}
	if !strings.Contains(out.String(), "device: pi-07") || !strings.Contains(out.String(), "commit_interval: 1s") {
		t.Errorf("config check printed %q; want the effective config with defaults", out.String())
	}
	err := run(context.Background(), []string{"config", "check", "--config", bad}, &out, &errOut, nil)
	if err == nil || !strings.Contains(err.Error(), "line 3: spool.max_bytes:") {
		t.Errorf("config check bad.yaml = %v; want an error naming line 3 and spool.max_bytes", err)
	}
	if err := run(context.Background(), []string{"config"}, &out, &errOut, nil); !errors.Is(err, errUsage) {
		t.Errorf("config (no check) = %v; want a usage error", err)
	}
}

// config check names every problem of the file in one run: the newcomer
// who fixed the unknown driver met the duplicate name only on the next.
func TestConfigCheckReportsEveryProblem(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`device: pi-07
spool: {max_byte: 1MiB}
sensors:
  - {name: demo, driver: sim}
  - {name: demo, driver: bme680}
`), 0o644)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"config", "check", "--config", bad}, &out, &errOut, nil)
	want := bad + ": line 2: spool.max_byte: unknown key (known here: commit_interval, max_age, max_bytes, path, policy)\n" +
		bad + `: line 5: sensors[1] (demo).driver: unknown driver "bme680" (known: ads1x15, aht20, bme280, bmp280, ds18b20, gpiocount, ina219, mcp9808, sim, thermal)` + "\n" +
		bad + `: line 5: sensors[1] (demo).name: "demo" is already the name of sensors[0]`
	if err == nil || err.Error() != want {
		t.Errorf("config check bad.yaml =\n%v\nwant\n%s", err, want)
	}
}

func TestSpoolAndImportUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{
		{"spool"}, {"spool", "frob"}, {"spool", "resend", "abc"}, {"spool", "resend", "0000000000000001", "x"},
		{"spool", "stats", "extra"}, {"import"}, {"import", "a", "b"},
	} {
		if err := run(context.Background(), args, &out, &errOut, nil); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v; want a usage error", args, err)
		}
	}
	// Flags may come after the arguments.
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("device: pi-07\nspool: {path: /nonexistent/spool.db}\nstatus: {socket: /nonexistent/s.sock}\n"), 0o644)
	err := run(context.Background(), []string{"import", "-", "--config", cfg}, &out, &errOut, nil)
	if err == nil || !strings.Contains(err.Error(), "no spool at /nonexistent/spool.db") {
		t.Errorf("import with no daemon and no spool = %v; want an error naming the spool", err)
	}
}

// config check warns (and still passes) when the token would cross the
// network in clear.
func TestConfigCheckWarnsOfCleartextToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("secret\n"), 0o600)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("device: pi-07\nuplink: {http: {url: 'http://receiver.example.com', token_file: '"+tok+"'}}\n"), 0o644)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "--config", cfg}, &out, &errOut, nil); err != nil {
		t.Fatalf("config check = %v; a cleartext token is a warning, not an error", err)
	}
	if want := cfg + ": warning: uplink.http.token_file is sent in clear to receiver.example.com (http://)"; !strings.Contains(errOut.String(), want) {
		t.Errorf("config check stderr = %q; want %q", errOut.String(), want)
	}
}
