//go:build e2e && !arm

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/powercut"
)

// TestWatchdogStopsWhenWriterWedged runs the daemon as systemd would
// (NOTIFY_SOCKET, WATCHDOG_USEC) with its spool on a file system whose
// fsyncs stall, as a dying SD card's do: the spool writer alone is stuck in
// a call while the sampler goes on. WATCHDOG=1 must stop (so systemd
// restarts the daemon), STATUS must say why, and once the syncs return the
// daemon pets the watchdog again.
func TestWatchdogStopsWhenWriterWedged(t *testing.T) {
	fsys := powercut.MountT(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type msg struct {
		at   time.Time
		text string
	}
	msgs := make(chan msg, 10000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- msg{time.Now(), string(buf[:n])}
		}
	}()
	config := filepath.Join(dir, "outpost.yaml")
	text := fmt.Sprintf("device: pi-e2e\nspool: {path: %s/spool.db, commit_interval: 200ms}\nstatus: {socket: %s/outpost.sock}\n"+
		"sensors:\n  - {name: sim, driver: sim, interval: 20ms, series: 2, seed: 1}\n", fsys.Mountpoint(), dir)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "outpost.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(binDir, "outpost"), "daemon", "--config", config)
	// A 2 s watchdog: the daemon pets every second; a loop counts as stuck
	// after the daemon's floor of 30 s without progress.
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=2000000")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		fsys.ResumeSyncs()
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	fail := func(format string, args ...any) {
		t.Helper()
		out, _ := os.ReadFile(logPath)
		t.Fatalf(format+"\ndaemon log:\n%s", append(args, out)...)
	}

	// next waits for a message with the prefix, up to the deadline.
	next := func(prefix string, within time.Duration) msg {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					fail("notify socket closed")
				}
				if strings.HasPrefix(m.text, prefix) {
					return m
				}
			case <-deadline:
				fail("no %q from the daemon within %v", prefix, within)
			}
		}
	}
	next("READY=1", 30*time.Second)
	next("WATCHDOG=1", 10*time.Second)

	fsys.StallSyncs()
	stalled := time.Now()
	// The writer is wedged from its next commit on: pets stop once its
	// readings have waited past the floor, and STATUS names the writer.
	var stuck msg
	lastPet := stalled
	deadline := time.After(90 * time.Second)
wait:
	for {
		select {
		case m := <-msgs:
			switch {
			case m.text == "WATCHDOG=1":
				lastPet = m.at
			case strings.HasPrefix(m.text, "STATUS=") && strings.Contains(m.text, "STUCK: spool writer"):
				stuck = m
				break wait
			}
		case <-deadline:
			fail("90s after fsyncs stalled, no STATUS naming a stuck spool writer")
		}
	}
	// No pet after the daemon declared itself stuck, for three watchdog
	// halves.
	quiet := time.After(3 * time.Second)
quietLoop:
	for {
		select {
		case m := <-msgs:
			if m.text == "WATCHDOG=1" {
				fail("WATCHDOG=1 %v after %q", m.at.Sub(stuck.at), stuck.text)
			}
		case <-quiet:
			break quietLoop
		}
	}
	t.Logf("fsyncs stalled: last WATCHDOG=1 %.1fs later, then %q %.1fs after the stall",
		lastPet.Sub(stalled).Seconds(), strings.TrimPrefix(stuck.text, "STATUS="), stuck.at.Sub(stalled).Seconds())

	// The card answers again: the writer commits and the pets come back.
	fsys.ResumeSyncs()
	resumed := time.Now()
	m := next("WATCHDOG=1", 30*time.Second)
	t.Logf("fsyncs resumed: WATCHDOG=1 again %.1fs later", m.at.Sub(resumed).Seconds())

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		exited = true
		if err != nil {
			fail("daemon exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		fail("daemon did not stop within 20s of SIGTERM")
	}
}
