package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

func TestPrefixedLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(&handler{level: slog.LevelDebug, sink: &prefixSink{w: &buf}})
	log.Debug("probe found", "bus", 1)
	log.Info("started", "version", "1.2.3")
	log.With("sensor", "greenhouse").WithGroup("spool").Warn("nearly full", "path", "/var/lib/outpost/spool.db", "used", 0.93)
	log.Error("commit failed\nsecond line", "err", errors.New("no space left on device"), slog.Group("g", "a", ""))
	want := []string{
		`<7>probe found bus=1`,
		`<6>started version=1.2.3`,
		`<4>nearly full sensor=greenhouse spool.path=/var/lib/outpost/spool.db spool.used=0.93`,
		`<3>commit failed\nsecond line err="no space left on device" g.a=""`,
	}
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines; want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %s\nwant     %s", i+1, got[i], want[i])
		}
	}
}

func TestLevelFilter(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn)
	log := slog.New(&handler{level: lv, sink: &prefixSink{w: &buf}})
	log.Info("hidden")
	log.Warn("shown")
	lv.Set(slog.LevelDebug) // a reload may change the level
	log.Debug("now shown")
	if got := buf.String(); got != "<4>shown\n<7>now shown\n" {
		t.Errorf("output = %q", got)
	}
}

type sent struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func TestJournalFields(t *testing.T) {
	var got []sent
	var fallback bytes.Buffer
	fail := false
	js := &journalSink{ident: "outpost", fallback: &prefixSink{w: &fallback}, send: func(msg string, p journal.Priority, vars map[string]string) error {
		if fail {
			return errors.New("journal socket gone")
		}
		got = append(got, sent{msg, p, vars})
		return nil
	}}
	log := slog.New(&handler{level: slog.LevelInfo, sink: js})
	log.With("sensor", "greenhouse").Warn("read failed", "err", errors.New("i2c nack"), "errors", 3, "message", "x", "_hidden", "y", "spool.path", "/p")
	if len(got) != 1 {
		t.Fatalf("sent %d records; want 1", len(got))
	}
	r := got[0]
	if r.pri != journal.PriWarning || r.msg != "read failed sensor=greenhouse err=\"i2c nack\" errors=3 message=x _hidden=y spool.path=/p" {
		t.Errorf("record = %d %q", r.pri, r.msg)
	}
	want := map[string]string{"SYSLOG_IDENTIFIER": "outpost", "SENSOR": "greenhouse", "ERR": "i2c nack", "ERRORS": "3", "ATTR_MESSAGE": "x", "HIDDEN": "y", "SPOOL_PATH": "/p"}
	if fmt.Sprint(r.vars) != fmt.Sprint(want) {
		t.Errorf("fields = %v\nwant     %v", r.vars, want)
	}
	fail = true
	log.Error("still logged")
	if fallback.String() != "<3>still logged\n" {
		t.Errorf("with the journal gone, stderr got %q; want the prefixed line", fallback.String())
	}
}

// TestNewLoggerPicksFormat runs the logger in a child whose stderr is a
// file, with and without JOURNAL_STREAM naming that file, as systemd sets
// it.
func TestNewLoggerPicksFormat(t *testing.T) {
	if os.Getenv("OUTPOST_LOGGER_CHILD") == "1" {
		NewLogger(os.Stderr, slog.LevelInfo, "outpost").Warn("disk nearly full", "sensor", "x")
		os.Exit(0)
	}
	run := func(journalStream bool) string {
		path := filepath.Join(t.TempDir(), "stderr")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestNewLoggerPicksFormat$")
		cmd.Env = append(os.Environ(), "OUTPOST_LOGGER_CHILD=1", "JOURNAL_STREAM=")
		if journalStream {
			cmd.Env = append(cmd.Env, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
		}
		cmd.Stderr = f
		if out, err := cmd.Output(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		data, _ := os.ReadFile(path)
		return string(data)
	}
	if got := run(false); !strings.Contains(got, "level=WARN") || !strings.Contains(got, `msg="disk nearly full" sensor=x`) || strings.HasPrefix(got, "<") {
		t.Errorf("outside systemd: %q; want a plain text line", got)
	}
	if journal.Enabled() {
		t.Log("this machine has a journal socket; the child logs there, not to stderr")
		return
	}
	if got := run(true); got != "<4>disk nearly full sensor=x\n" {
		t.Errorf("stderr as the journal stream: %q; want a priority-prefixed line", got)
	}
}
