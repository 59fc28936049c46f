package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// memOutbox stands in for the spool (which has its own contract tests):
// it hands each reading out once per life, and records acks and dead
// letters so the tests can check every reading's fate.
type memOutbox struct {
	mu        sync.Mutex
	readings  []reading.Reading
	next      int
	stop      int // when set, Next hands out no reading from here on
	acked     map[uint64]int
	dead      map[uint64]string
	committed chan struct{}
}

func newMemOutbox(n int, mod func(*reading.Reading)) *memOutbox {
	o := &memOutbox{acked: map[uint64]int{}, dead: map[uint64]string{}, committed: make(chan struct{}, 1)}
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range n {
		r := reading.Reading{Device: "pi-07", Stream: 0xabc, Seq: uint64(i + 1), Sensor: fmt.Sprintf("demo.s%d", i%4),
			Value: float64(i%1000) / 100, Unit: "C", Time: t0.Add(time.Duration(i) * time.Millisecond)}
		if mod != nil {
			mod(&r)
		}
		o.readings = append(o.readings, r)
	}
	return o
}

func (o *memOutbox) Next(maxReadings, _ int) (*reading.Batch, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	limit := len(o.readings)
	if o.stop > 0 {
		limit = o.stop
	}
	if o.next >= limit {
		return nil, nil
	}
	end := min(o.next+maxReadings, limit)
	rs := append([]reading.Reading(nil), o.readings[o.next:end]...)
	b := &reading.Batch{Stream: rs[0].Stream, From: rs[0].Seq, To: rs[len(rs)-1].Seq, Readings: rs}
	o.next = end
	return b, nil
}

func (o *memOutbox) Ack(b *reading.Batch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range b.Readings {
		o.acked[r.Seq]++
	}
	return nil
}

func (o *memOutbox) DeadLetter(_ context.Context, b *reading.Batch, why string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range b.Readings {
		o.dead[r.Seq] = why
	}
	return nil
}

func (o *memOutbox) Committed() <-chan struct{} { return o.committed }

// settled reports whether every reading was acked or dead-lettered.
func (o *memOutbox) settled() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.acked)+len(o.dead) == len(o.readings)
}

// checkFates: every reading acked exactly once or dead-lettered, never both.
func (o *memOutbox) checkFates(t *testing.T, wantDead ...uint64) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.readings {
		_, dead := o.dead[r.Seq]
		switch n := o.acked[r.Seq]; {
		case dead && n > 0:
			t.Errorf("seq %d both acked and dead-lettered", r.Seq)
		case !dead && n != 1:
			t.Errorf("seq %d acked %d times; want 1", r.Seq, n)
		}
	}
	if len(o.dead) != len(wantDead) {
		t.Errorf("dead-lettered %d readings (%v); want %v", len(o.dead), o.dead, wantDead)
	}
	for _, s := range wantDead {
		if _, ok := o.dead[s]; !ok {
			t.Errorf("seq %d not dead-lettered", s)
		}
	}
}

// receiver is a test HTTP peer that follows the wire contract: it stores
// each (stream, seq) once, answers with the counts, rejects a line whose
// sensor is "poison" with 400 naming it, answers 413 above maxLines, and
// fails the first failFirst requests with 503.
type receiver struct {
	t         *testing.T
	mu        sync.Mutex
	stored    map[uint64]int
	requests  int
	failFirst int
	maxLines  int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := decodeRequest(rc.t, r)
	if got.err != nil { // a batch is stored whole or not at all
		http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if rc.requests <= rc.failFirst {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"database unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	if rc.maxLines > 0 && len(got.lines) > rc.maxLines {
		http.Error(w, `{"error":"body too large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	for i, l := range got.lines {
		if l.Reading.Sensor == "poison" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"error": fmt.Sprintf("line %d: field \"sensor\": poison", i+1), "line": i + 1})
			return
		}
	}
	var c Counts
	for _, l := range got.lines {
		if l.Kind != reading.KindReading {
			continue
		}
		if rc.stored[l.Reading.Seq] > 0 {
			c.Duplicates++
		} else {
			c.Accepted++
		}
		rc.stored[l.Reading.Seq]++
	}
	json.NewEncoder(w).Encode(c)
}

func drainUntilSettled(t *testing.T, o *memOutbox, d *Drainer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !o.settled() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run = %v; want context.Canceled", err)
	}
	if !o.settled() {
		t.Fatalf("not every reading was delivered or dead-lettered within 30s: status %+v", d.Status())
	}
}

func TestDrainOverHTTP(t *testing.T) {
	rc := &receiver{t: t, stored: map[uint64]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	o := newMemOutbox(5000, nil)
	d := &Drainer{Outbox: o, Sender: newSender(t, srv.URL, HTTPOptions{}), MaxReadings: 100, InFlight: 4}
	drainUntilSettled(t, o, d)
	o.checkFates(t)
	for seq := uint64(1); seq <= 5000; seq++ {
		if rc.stored[seq] != 1 {
			t.Fatalf("receiver stored seq %d %d times; want once", seq, rc.stored[seq])
		}
	}
	if st := d.Status(); st.Sent != 5000 || st.Failures != 0 {
		t.Errorf("status = %+v; want 5000 sent, no failures", st)
	}
}

func TestDrainPoisonDeadLetteredOthersFlow(t *testing.T) {
	rc := &receiver{t: t, stored: map[uint64]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	o := newMemOutbox(1000, func(r *reading.Reading) {
		if r.Seq == 17 || r.Seq == 733 {
			r.Sensor = "poison"
		}
	})
	d := &Drainer{Outbox: o, Sender: newSender(t, srv.URL, HTTPOptions{}), MaxReadings: 100, InFlight: 2}
	drainUntilSettled(t, o, d)
	o.checkFates(t, 17, 733)
	if why := o.dead[17]; !strings.Contains(why, "poison") {
		t.Errorf("dead-letter reason = %q; want the receiver's error", why)
	}
	if len(rc.stored) != 998 {
		t.Errorf("receiver stored %d readings; want the 998 good ones", len(rc.stored))
	}
}

func TestDrainSplitsTooLarge(t *testing.T) {
	rc := &receiver{t: t, stored: map[uint64]int{}, maxLines: 60}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	o := newMemOutbox(1000, nil)
	d := &Drainer{Outbox: o, Sender: newSender(t, srv.URL, HTTPOptions{}), MaxReadings: 500, InFlight: 2}
	drainUntilSettled(t, o, d)
	o.checkFates(t)
	if len(rc.stored) != 1000 {
		t.Errorf("receiver stored %d; want 1000", len(rc.stored))
	}
}

func TestDrainRetriesThroughOutage(t *testing.T) {
	rc := &receiver{t: t, stored: map[uint64]int{}, failFirst: 3}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var logs strings.Builder
	var logMu sync.Mutex
	o := newMemOutbox(200, nil)
	d := &Drainer{Outbox: o, Sender: newSender(t, srv.URL, HTTPOptions{}), MaxReadings: 100, InFlight: 1,
		Backoff: Backoff{MaxRetryAfter: 20 * time.Millisecond},
		Logger:  slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))}
	drainUntilSettled(t, o, d)
	o.checkFates(t)
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "upload failing"); n != 1 {
		t.Errorf("the same error was logged %d times; want once:\n%s", n, out)
	}
	if !strings.Contains(out, "upload succeeded again") || !strings.Contains(out, "after_failures=3") {
		t.Errorf("no recovery line after 3 failures:\n%s", out)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// linkSender is a link that is down until up is set.
type linkSender struct {
	up    atomic.Bool
	sends atomic.Int32
}

func (s *linkSender) Send(_ context.Context, b *reading.Batch) Result {
	s.sends.Add(1)
	if !s.up.Load() {
		return Result{Outcome: Retry, Err: fmt.Errorf("dial tcp: network is unreachable")}
	}
	return Result{Outcome: Accepted, Counts: Counts{Accepted: len(b.Readings)}}
}

// TestDrainResumesWithinAMinute: after an hour-long outage, the link is
// used again well within a minute of returning (the backoff cap), and the
// outage cost few attempts (not a busy loop).
func TestDrainResumesWithinAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newMemOutbox(10, nil)
		s := &linkSender{}
		d := &Drainer{Outbox: o, Sender: s, InFlight: 1}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go d.Run(ctx)
		time.Sleep(time.Hour)
		attempts := s.sends.Load()
		// Full jitter averages half the 30s cap: ~240 in an hour.
		if attempts < 60 || attempts > 1000 {
			t.Errorf("%d attempts in an hour of outage; want a capped backoff (~240)", attempts)
		}
		if st := d.Status(); st.State != "retrying" || !strings.Contains(st.LastError, "unreachable") {
			t.Errorf("status during outage = %+v", st)
		}
		s.up.Store(true)
		back := time.Now()
		for !o.settled() {
			time.Sleep(100 * time.Millisecond)
		}
		if waited := time.Since(back); waited > 30*time.Second {
			t.Errorf("delivery resumed %v after the link returned; want within 30s", waited)
		}
		o.checkFates(t)
		cancel()
		synctest.Wait()
	})
}

func TestDrainRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newMemOutbox(3000, nil)
		s := &linkSender{}
		s.up.Store(true)
		d := &Drainer{Outbox: o, Sender: s, InFlight: 4, MaxReadings: 100, RateLimit: 200}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		go d.Run(ctx)
		for !o.settled() {
			time.Sleep(10 * time.Millisecond)
		}
		// A burst of 200, then 200/s: 3000 readings take about 14s.
		if took := time.Since(start); took < 13*time.Second || took > 16*time.Second {
			t.Errorf("3000 readings at 200/s took %v; want about 14s", took)
		}
		o.checkFates(t)
		cancel()
		synctest.Wait()
	})
}
