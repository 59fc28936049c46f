package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/logbuf"
	"github.com/outpost-iot/outpost/spool"
)

// notifySocket listens where the daemon's sd_notify messages go, as
// systemd would.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

type testDaemon struct {
	dir, config string
	log         *logbuf.Buffer
	reload      chan struct{}
	cancel      context.CancelFunc
	done        chan error
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDaemon runs the daemon on a config whose SPOOL and SOCKET words are
// replaced by paths in a temp dir.
func startDaemon(t *testing.T, config string) *testDaemon {
	t.Helper()
	return startDaemonIn(t, t.TempDir(), config, Options{})
}

// startDaemonIn is startDaemon in a given directory (a restart finds the
// spool of the run before), with o's test fields (the clock source).
func startDaemonIn(t *testing.T, dir, config string, o Options) *testDaemon {
	t.Helper()
	d := &testDaemon{dir: dir, log: &logbuf.Buffer{}, reload: make(chan struct{}, 1), done: make(chan error, 1)}
	d.config = filepath.Join(d.dir, "outpost.yaml")
	writeConfig(t, d.config, d.expand(config))
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	o.ConfigPath, o.Version, o.Stderr, o.Reload = d.config, "test", d.log, d.reload
	go func() {
		d.done <- Run(ctx, o)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			t.Error("daemon did not stop within 20s")
		}
	})
	return d
}

func (d *testDaemon) expand(config string) string {
	r := strings.NewReplacer("SPOOL", filepath.Join(d.dir, "spool.db"), "SOCKET", filepath.Join(d.dir, "outpost.sock"))
	return r.Replace(config)
}

func (d *testDaemon) socket() string { return filepath.Join(d.dir, "outpost.sock") }

func (d *testDaemon) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("Run returned %v after SIGTERM; want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop within 20s")
	}
	d.done <- nil // for the cleanup
}

func waitStatus(t *testing.T, socket string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last Status
	var err error
	for time.Now().Before(deadline) {
		last, _, err = FetchStatus(context.Background(), socket)
		if err == nil && cond(last) {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("status never met the condition; last %+v, err %v", last, err)
	return last
}

const simConfig = `device: test-pi
spool: {path: SPOOL, commit_interval: 10s}
status: {socket: SOCKET}
sensors:
  - {name: demo, driver: sim, interval: 10ms, series: 2, seed: 1}
`

func TestNotifyProtocol(t *testing.T) {
	msgs := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "400000") // 0.4s: pinged every 0.2s
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	d := startDaemon(t, simConfig)
	waitStatus(t, d.socket(), func(s Status) bool { return len(s.Sensors) == 1 && s.Sensors[0].Readings > 0 })
	time.Sleep(time.Second)
	d.stop(t)

	var order []string
	watchdogs := 0
	for m := range drain(msgs) {
		switch {
		case m == "WATCHDOG=1":
			watchdogs++
			if watchdogs == 1 {
				order = append(order, m)
			}
		case strings.HasPrefix(m, "STATUS="):
			if !strings.Contains(m, "sensors ok") {
				t.Errorf("STATUS line %q does not summarise sensors", m)
			}
			if len(order) == 0 || order[len(order)-1] != "STATUS" {
				order = append(order, "STATUS")
			}
		default:
			order = append(order, m)
		}
	}
	got := strings.Join(order, " ")
	if !strings.HasPrefix(got, "READY=1") || !strings.HasSuffix(got, "STOPPING=1") || !strings.Contains(got, "WATCHDOG=1") || !strings.Contains(got, "STATUS") {
		t.Errorf("notify messages in order: %s; want READY=1 … STATUS … WATCHDOG=1 … STOPPING=1", got)
	}
	if watchdogs < 4 {
		t.Errorf("%d WATCHDOG=1 in about 1.5s with a 0.4s watchdog; want one every 0.2s", watchdogs)
	}
}

// drain returns what the channel holds now, without waiting for more.
func drain(ch <-chan string) <-chan string {
	out := make(chan string, len(ch)+1)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				close(out)
				return out
			}
			out <- m
		case <-time.After(200 * time.Millisecond):
			close(out)
			return out
		}
	}
}

// TestSIGTERMCommitsPending: with a 10s commit interval nothing would be
// on disk after 1.5s; the shutdown commits everything sampled.
func TestSIGTERMCommitsPending(t *testing.T) {
	d := startDaemon(t, simConfig)
	st := waitStatus(t, d.socket(), func(s Status) bool { return len(s.Sensors) == 1 && s.Sensors[0].Readings >= 100 })
	if st.Spool.Readings != 0 {
		t.Fatalf("spool has %d committed readings before the first commit interval; the test needs none", st.Spool.Readings)
	}
	sampledBefore := st.Sensors[0].Readings
	d.stop(t)

	sp, err := spool.Open(spool.Options{Path: filepath.Join(d.dir, "spool.db"), Device: "test-pi"})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close(context.Background())
	stats, err := sp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if stats.Readings < sampledBefore || stats.Readings != stats.Seq {
		t.Errorf("after SIGTERM the spool holds %d readings (seq %d); want at least the %d sampled before, contiguous", stats.Readings, stats.Seq, sampledBefore)
	}
	if !strings.Contains(d.log.String(), "msg=stopped") {
		t.Errorf("no 'stopped' line in the log:\n%s", d.log.String())
	}
}

func TestReload(t *testing.T) {
	d := startDaemon(t, simConfig)
	waitStatus(t, d.socket(), func(s Status) bool { return len(s.Sensors) == 1 })

	// A good new config: a second sensor appears.
	writeConfig(t, d.config, d.expand(simConfig+"  - {name: second, driver: sim, interval: 50ms}\n"))
	d.reload <- struct{}{}
	waitStatus(t, d.socket(), func(s Status) bool { return len(s.Sensors) == 2 && s.Sensors[1].Readings > 0 })

	// A bad one is rejected and the running one keeps sampling.
	writeConfig(t, d.config, d.expand(simConfig+"  - {name: third, driver: nosuch}\n"))
	d.reload <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), "new configuration rejected") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if log := d.log.String(); !strings.Contains(log, "new configuration rejected") || !strings.Contains(log, `unknown driver \"nosuch\"`) {
		t.Errorf("bad reload not logged with its reason:\n%s", log)
	}
	before := waitStatus(t, d.socket(), func(s Status) bool { return len(s.Sensors) == 2 }).Sensors[1].Readings
	waitStatus(t, d.socket(), func(s Status) bool { return len(s.Sensors) == 2 && s.Sensors[1].Readings > before })
}

func TestStatusSocket(t *testing.T) {
	d := startDaemon(t, simConfig)
	st := waitStatus(t, d.socket(), func(s Status) bool { return len(s.Sensors) == 1 && s.Sensors[0].State == "ok" })
	if st.Device != "test-pi" || st.Version != "test" || st.Uplink.Kind != "none" || st.Spool.Stream == "" {
		t.Errorf("status = %+v", st)
	}
	fi, err := os.Stat(d.socket())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode %04o; want 0660 (root and the outpost group)", perm)
	}
	var out bytes.Buffer
	if err := WriteStatus(&out, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"device   test-pi (outpost test)", "uplink   none: not configured", "demo", "s0="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("outpost status output lacks %q:\n%s", want, out.String())
		}
	}
	// A second daemon on the same socket refuses to start it.
	if _, err := (&Daemon{}).serveStatus(d.socket()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second listener on a live socket: %v; want 'in use'", err)
	}
}
