package sampler

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestGoodSensorsKeepFlowing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &memSink{}
		logs := newLogCounter()
		s, err := New(specs(t, `
- {name: demo, driver: sim, interval: 100ms, series: 3, seed: 1, dropout_rate: 0}
- {name: soc, driver: thermal, interval: 1s}
- {name: tank, driver: ds18b20, interval: 1s, probes: {water: 28-000005e2fdc3, air: 28-3c01d607d4c2}}
- {name: gone, driver: ds18b20, interval: 1s, probes: [28-ffffffffffff]}
- {name: nobus, driver: bme280, bus: "7", interval: 1s}
`), sink, Options{Logger: slog.New(logs), SysRoot: "testdata/sys"})
		if err != nil {
			t.Fatalf("New error = %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 9450*time.Millisecond)
		defer cancel()
		if err := s.Run(ctx); err != nil {
			t.Fatalf("Run error = %v", err)
		}
		got := sink.bySensor()
		// The synctest clock starts on a whole second: reads at 0 and on
		// every grid slot before 9.45 s.
		for name, want := range map[string]int{
			"demo.s0": 95, "demo.s1": 95, "demo.s2": 95,
			"soc.temperature": 10,
			"tank.water":      10, // the good probe keeps flowing
			"tank.air":        0,  // the probe failing its CRC
		} {
			if got[name] != want {
				t.Errorf("samples of %s = %d; want %d (all: %v)", name, got[name], want, got)
			}
		}
		st := map[string]SensorStatus{}
		for _, x := range s.Status() {
			st[x.Name] = x
			if x.State != StateStopped {
				t.Errorf("%s: state after Run = %s; want stopped", x.Name, x.State)
			}
		}
		if e := st["tank"].Errors; e != 10 {
			t.Errorf("tank errors = %d; want 10 (one per read)", e)
		}
		// gone fails to open at 0 s, then backs off 1, 2, 4 s: attempts at
		// 0, 1, 3 and 7 s.
		if e := st["gone"].Errors; e != 4 {
			t.Errorf("gone errors = %d; want 4 (backoff 1s, 2s, 4s)", e)
		}
		if st["nobus"].Errors != 4 || st["nobus"].LastError == "" {
			t.Errorf("nobus status = %+v; want 4 errors and the last one", st["nobus"])
		}
		if st["soc"].Errors != 0 || st["soc"].Readings != 10 || st["soc"].Device != "thermal_zone0(cpu-thermal)" {
			t.Errorf("soc status = %+v", st["soc"])
		}
		if len(st["soc"].Last) != 1 || st["soc"].Last[0].Value != 51.54 {
			t.Errorf("soc last = %+v; want 51.54", st["soc"].Last)
		}
		// Logged once per change of state, not per failed tick.
		for _, c := range []struct {
			sensor, msg string
			want        int
		}{
			{"tank", "sensor partly failing", 1},
			{"gone", "sensor failing; retrying with backoff", 1},
			{"nobus", "sensor failing; retrying with backoff", 1},
			{"demo", "sensor started", 1},
			{"soc", "sensor started", 1},
		} {
			if n := logs.get(c.sensor, c.msg); n != c.want {
				t.Errorf("%s: %q logged %d times; want %d", c.sensor, c.msg, n, c.want)
			}
		}
		if n := logs.total("gone"); n != 1 {
			t.Errorf("gone logged %d records; want 1", n)
		}
	})
}

func TestStampsOnTheGrid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Start off the grid.
		time.Sleep(1234 * time.Millisecond)
		sink := &memSink{}
		s, err := New([]SensorSpec{SimSensor("x", 500*time.Millisecond, 1, 1)}, sink, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		s.Run(ctx)
		if len(sink.samples) < 6 {
			t.Fatalf("%d samples; want at least 6", len(sink.samples))
		}
		for i, x := range sink.samples {
			if i == 0 {
				continue // the first read is at once
			}
			if !x.Time.Equal(x.Time.Truncate(500 * time.Millisecond)) {
				t.Errorf("sample %d at %v; want it on the 500ms grid", i, x.Time)
			}
			if x.Time.Location() != time.UTC || x.BootTime <= 0 {
				t.Errorf("sample %d: time %v boot time %v; want UTC and > 0", i, x.Time, x.BootTime)
			}
		}
	})
}

func TestRecoveryLoggedOnce(t *testing.T) {
	root := t.TempDir()
	zone := filepath.Join(root, "class", "thermal", "thermal_zone0")
	synctest.Test(t, func(t *testing.T) {
		sink := &memSink{}
		logs := newLogCounter()
		s, err := New(specs(t, `[{name: soc, driver: thermal, interval: 1s}]`), sink,
			Options{Logger: slog.New(logs), SysRoot: root, MaxBackoff: 4 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		time.Sleep(20 * time.Second) // fails at 0, 1, 3, 7, 11, 15, 19 s (capped at 4 s)
		synctest.Wait()
		if st := s.Status()[0]; st.State != StateFailing || st.Errors != 7 {
			t.Errorf("status while missing = %+v; want failing with 7 errors", st)
		}
		// The zone appears (a module loaded late).
		if err := os.MkdirAll(zone, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(zone, "temp"), []byte("40000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // opens at 23 s, then reads every second
		synctest.Wait()
		if st := s.Status()[0]; st.State != StateOK || st.Readings < 7 {
			t.Errorf("status after recovery = %+v; want ok with readings", st)
		}
		// Broken again: a read error closes and retries the sensor.
		if err := os.WriteFile(filepath.Join(zone, "temp"), []byte("garbage\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		cancel()
		<-done
		if n := logs.get("soc", "sensor failing; retrying with backoff"); n != 2 {
			t.Errorf("failing logged %d times; want 2 (one per outage)", n)
		}
		if n := logs.get("soc", "sensor recovered"); n != 1 {
			t.Errorf("recovered logged %d times; want 1", n)
		}
		if got := sink.bySensor()["soc.temperature"]; got < 7 || got > 11 {
			t.Errorf("%d samples; want the ones between recovery and breakage", got)
		}
	})
}

func TestSinkErrorsCountedAndLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &memSink{err: errors.New("spool full")}
		logs := newLogCounter()
		s, _ := New([]SensorSpec{SimSensor("x", time.Second, 2, 1)}, sink, Options{Logger: slog.New(logs)})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		time.Sleep(4500 * time.Millisecond)
		sink.setErr(nil)
		time.Sleep(2 * time.Second)
		cancel()
		<-done
		st := s.Status()[0]
		if st.SinkErrors == 0 || st.Readings == 0 || st.State != StateStopped {
			t.Errorf("status = %+v; want sink errors, then readings", st)
		}
		if a, b := logs.get("x", "readings refused by the spool"), logs.get("x", "readings accepted by the spool again"); a != 1 || b != 1 {
			t.Errorf("refused logged %d times, accepted %d; want 1 and 1", a, b)
		}
	})
}

func TestRunOnce(t *testing.T) {
	s, err := New(nil, &memSink{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("first Run error = %v", err)
	}
	if err := s.Run(ctx); err == nil {
		t.Error("second Run error = nil; want an error")
	}
	if _, err := New(nil, nil, Options{}); err == nil {
		t.Error("New(nil sink) error = nil")
	}
	if _, err := New([]SensorSpec{{Name: "x", Driver: "sim"}}, &memSink{}, Options{}); err == nil {
		t.Error("New(undecoded spec) error = nil")
	}
}

func TestStuck(t *testing.T) {
	// A thermal zone whose temp file is a FIFO: reading it blocks in the
	// kernel until something writes, like a hung sysfs read. Real time:
	// synctest cannot see through a blocking system call.
	root := t.TempDir()
	zone := filepath.Join(root, "class", "thermal", "thermal_zone0")
	if err := os.MkdirAll(zone, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(zone, "temp")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	sink := &memSink{}
	s, err := New(specs(t, "[{name: soc, driver: thermal, interval: 1s}, {name: demo, driver: sim, interval: 10ms}]"), sink, Options{SysRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	if got := s.Stuck(time.Hour); len(got) != 0 {
		t.Errorf("Stuck(1h) = %v; want none", got)
	}
	time.Sleep(300 * time.Millisecond)
	if got := s.Stuck(100 * time.Millisecond); len(got) != 1 || got[0] != "soc" {
		t.Errorf("Stuck(100ms) = %v; want [soc]", got)
	}
	if n := sink.bySensor()["demo.s0"]; n < 5 {
		t.Errorf("demo.s0: %d samples while soc hangs; want it to keep flowing", n)
	}
	cancel()
	// Release the read: the sensor hands its value and stops.
	if err := os.WriteFile(fifo, []byte("42000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	<-done
	if got := s.Stuck(0); len(got) != 0 {
		t.Errorf("Stuck(0) after Run = %v; want none", got)
	}
	if st := s.Status()[0]; len(st.Last) != 1 || st.Last[0].Value != 42 {
		t.Errorf("soc status = %+v; want the value read after the hang", st)
	}
}

// stepClock is a Clock whose stamps a test sets.
type stepClock struct {
	mu sync.Mutex
	st Stamp
}

func (c *stepClock) Stamp() Stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *stepClock) set(st Stamp) {
	c.mu.Lock()
	c.st = st
	c.mu.Unlock()
}

func TestStampsFromOptionsClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unsynced := Stamp{Time: time.Unix(42, 0), BootTime: 42 * time.Second, Unsynced: true}
		synced := Stamp{Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), BootTime: 43 * time.Second}
		clk := &stepClock{st: unsynced}
		sink := &memSink{}
		s, err := New([]SensorSpec{SimSensor("x", time.Second, 2, 1)}, sink, Options{Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		synctest.Wait() // the first read, at once
		clk.set(synced)
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		<-done
		if len(sink.samples) != 4 {
			t.Fatalf("%d samples; want 4 (two reads of two series)", len(sink.samples))
		}
		for i, x := range sink.samples {
			want := unsynced
			if i >= 2 {
				want = synced
			}
			if !x.Time.Equal(want.Time) || x.Time.Location() != time.UTC || x.BootTime != want.BootTime || x.Unsynced != want.Unsynced {
				t.Errorf("sample %d = %v boot %v unsynced %v; want %v boot %v unsynced %v", i, x.Time, x.BootTime, x.Unsynced, want.Time, want.BootTime, want.Unsynced)
			}
		}
	})
}
