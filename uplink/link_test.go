package uplink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// The link tests run the Drainer in a synctest bubble against netSim, a
// receiver behind a link the test takes down and brings back: time is
// fake, so the figures are exact and nothing depends on the machine.

// netSim answers every send after 50 ms: Accepted while up, downRes while
// down, and 500 always for the batch that starts at poison.
type netSim struct {
	mu       sync.Mutex
	down     bool
	downRes  Result
	poison   uint64
	inFlight int
	maxDown  int // most sends in flight at once while down
	sends    []simSend
}

type simSend struct {
	at   time.Time // when it was sent
	from uint64
	ok   bool
}

func (n *netSim) Send(ctx context.Context, b *reading.Batch) Result {
	n.mu.Lock()
	down := n.down
	n.inFlight++
	if down {
		n.maxDown = max(n.maxDown, n.inFlight)
	}
	s := simSend{at: time.Now(), from: b.From}
	n.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.inFlight--
	res := Result{Outcome: Accepted, Counts: Counts{Accepted: len(b.Readings)}}
	switch {
	case down:
		res = n.downRes
	case b.From == n.poison:
		res = Result{Outcome: Retry, Err: fmt.Errorf("500 internal server error: a receiver bug")}
	}
	s.ok = res.Outcome == Accepted
	n.sends = append(n.sends, s)
	return res
}

func (n *netSim) setDown(down bool) {
	n.mu.Lock()
	n.down = down
	n.mu.Unlock()
}

// since returns the sends made at or after t.
func (n *netSim) since(t time.Time) []simSend {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []simSend
	for _, s := range n.sends {
		if !s.at.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

var (
	refused = Result{Outcome: Retry, Unreachable: true, Err: fmt.Errorf("dial tcp 127.0.0.1:8080: connect: connection refused")}
	busy    = Result{Outcome: Retry, Err: fmt.Errorf("503 service unavailable: database unavailable")}
)

// seededRand is a deterministic, goroutine-safe Backoff.Rand.
func seededRand() func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(1, 2))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// outage runs a drainer of batches of 100 over n while the link is down
// for the given time from the start (every worker holding a batch when it
// fell), brings the link back and waits until everything is settled. It
// returns the time the link came back.
func outage(t *testing.T, o *memOutbox, n *netSim, inFlight int, down time.Duration) (*Drainer, time.Time) {
	t.Helper()
	n.setDown(true)
	d := &Drainer{Outbox: o, Sender: n, MaxReadings: 100, InFlight: inFlight, Backoff: Backoff{Rand: seededRand()}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		synctest.Wait()
	})
	go d.Run(ctx)
	time.Sleep(down)
	n.setDown(false)
	back := time.Now()
	for !o.settled() {
		if time.Since(back) > 10*time.Minute {
			t.Fatalf("not settled 10 minutes after the link returned: %+v", d.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d, back
}

// delivered returns the first and the last accepted send from t on.
func delivered(sends []simSend) (first, last simSend) {
	for _, s := range sends {
		if !s.ok {
			continue
		}
		if first.at.IsZero() {
			first = s
		}
		last = s
	}
	return first, last
}

// TestLinkBacklogDeliveredAtOnceAfterReturn: after a 10-minute outage of
// 503s (exponential backoff up to 30 s), every worker's batch goes out
// within one send of the first success, not on timers of their own.
func TestLinkBacklogDeliveredAtOnceAfterReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newMemOutbox(800, nil)
		n := &netSim{downRes: busy}
		_, back := outage(t, o, n, 8, 10*time.Minute)
		first, last := delivered(n.since(back))
		if spread := last.at.Sub(first.at); spread > 100*time.Millisecond {
			t.Errorf("the backlog took %v from the first success to the last batch sent; want every batch at once", spread)
		}
		if wait := first.at.Sub(back); wait > 31*time.Second {
			t.Errorf("first delivery %v after the link returned; want within the 30 s backoff cap", wait)
		}
		o.checkFates(t)
	})
}

// TestLinkOldestFirstAfterReturn: the batch that goes first when the link
// returns is the oldest any worker holds, then the rest at once.
func TestLinkOldestFirstAfterReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newMemOutbox(800, nil)
		n := &netSim{downRes: refused}
		_, back := outage(t, o, n, 8, time.Minute)
		first, last := delivered(n.since(back))
		if first.from != 1 {
			t.Errorf("the first batch delivered after the return starts at seq %d; want the oldest, seq 1", first.from)
		}
		if wait := first.at.Sub(back); wait > time.Second {
			t.Errorf("first delivery %v after a refusing link returned; want within 1 s", wait)
		}
		if spread := last.at.Sub(first.at); spread > 100*time.Millisecond {
			t.Errorf("the backlog took %v after the first success; want at once", spread)
		}
		o.checkFates(t)
	})
}

// TestLinkOneProbeWhileDown: during a 10-minute outage of 503s, only one
// send at a time goes out (the probe), the backoff is the link's one, and
// Status counts the fall plus each failed probe.
func TestLinkOneProbeWhileDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers = 4
		o := newMemOutbox(400, nil)
		n := &netSim{downRes: busy}
		n.setDown(true)
		d := &Drainer{Outbox: o, Sender: n, MaxReadings: 100, InFlight: workers, Backoff: Backoff{Rand: seededRand()}}
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); synctest.Wait() }()
		start := time.Now()
		go d.Run(ctx)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		sends := n.since(start)
		// The first workers sends were in flight as the link fell; then
		// one probe at a time, at a mean of 15 s once at the 30 s cap.
		probes := len(sends) - workers
		if probes < 20 || probes > 80 {
			t.Errorf("%d probes in a 10-minute outage; want one at a time on a 30 s capped backoff (about 40)", probes)
		}
		n.mu.Lock()
		maxDown := n.maxDown
		n.mu.Unlock()
		if maxDown > workers {
			t.Errorf("%d sends in flight at once while down; want at most the %d of the fall", maxDown, workers)
		}
		for i := workers + 1; i < len(sends); i++ {
			if gap := sends[i].at.Sub(sends[i-1].at); gap < time.Millisecond {
				t.Errorf("sends %d and %d went out %v apart while down; want one probe at a time", i-1, i, gap)
			}
		}
		st := d.Status()
		if want := 1 + probes; st.Failures != want || st.State != "retrying" {
			t.Errorf("status = %+v; want retrying, %d failures (the fall and %d failed probes)", st, want, probes)
		}
	})
}

// TestLinkHonoursRetryAfter: a 503 asking for 20 s is not probed sooner,
// by any worker.
func TestLinkHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newMemOutbox(400, nil)
		n := &netSim{downRes: Result{Outcome: Retry, RetryAfter: 20 * time.Second, Err: fmt.Errorf("429 too many requests")}}
		n.setDown(true)
		d := &Drainer{Outbox: o, Sender: n, MaxReadings: 100, InFlight: 4, Backoff: Backoff{Rand: seededRand()}}
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); synctest.Wait() }()
		start := time.Now()
		go d.Run(ctx)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		sends := n.since(start.Add(time.Second)) // after the 4 in flight at the fall
		if len(sends) < 10 || len(sends) > 15 {
			t.Errorf("%d sends in 5 minutes of Retry-After: 20; want about 15", len(sends))
		}
		for i := 1; i < len(sends); i++ {
			if gap := sends[i].at.Sub(sends[i-1].at); gap < 20*time.Second {
				t.Errorf("sends %d and %d went out %v apart; the receiver asked for 20 s", i-1, i, gap)
			}
		}
		n.setDown(false)
		for !o.settled() {
			time.Sleep(100 * time.Millisecond)
		}
		o.checkFates(t)
	})
}

// TestLinkUnreachableRetriedWithinASecond: a refused connection is tried
// again within Backoff.UnreachableMax (1 s), not on the exponential
// backoff, and still by one probe at a time.
func TestLinkUnreachableRetriedWithinASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newMemOutbox(400, nil)
		n := &netSim{downRes: refused}
		n.setDown(true)
		d := &Drainer{Outbox: o, Sender: n, MaxReadings: 100, InFlight: 4, Backoff: Backoff{Rand: seededRand()}}
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); synctest.Wait() }()
		start := time.Now()
		go d.Run(ctx)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		sends := n.since(start.Add(time.Millisecond))
		if len(sends) < 100 || len(sends) > 250 {
			t.Errorf("%d probes in 2 minutes of refused connections; want one each 0.5–1 s", len(sends))
		}
		for i := 1; i < len(sends); i++ {
			if gap := sends[i].at.Sub(sends[i-1].at); gap > 1100*time.Millisecond || gap < 500*time.Millisecond {
				t.Errorf("probes %d and %d went out %v apart; want 0.5–1 s (plus the 50 ms send)", i-1, i, gap)
				break
			}
		}
	})
}

// TestLinkPoisonBatchDoesNotWedge: the oldest batch gets a 500 every time
// (a receiver bug its content triggers). When the link returns after an
// outage it is the probe and fails; the turn passes to the next batch,
// whose success brings the link up, so every other batch is delivered at
// once, while the poison batch backs off on its own and does not take the
// link down again.
func TestLinkPoisonBatchDoesNotWedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newMemOutbox(800, nil)
		n := &netSim{downRes: refused, poison: 1}
		n.setDown(true)
		d := &Drainer{Outbox: o, Sender: n, MaxReadings: 100, InFlight: 8, Backoff: Backoff{Rand: seededRand()}}
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); synctest.Wait() }()
		go d.Run(ctx)
		time.Sleep(time.Minute)
		n.setDown(false)
		back := time.Now()
		time.Sleep(3 * time.Second)
		o.mu.Lock()
		acked := len(o.acked)
		o.mu.Unlock()
		if acked != 700 {
			t.Errorf("%d readings delivered 3 s after the link returned; want the 700 of the 7 good batches", acked)
		}
		// New readings keep flowing past the poison batch.
		o.mu.Lock()
		o.readings = append(o.readings, newMemOutbox(900, nil).readings[800:]...)
		o.mu.Unlock()
		o.committed <- struct{}{}
		time.Sleep(10 * time.Minute)
		o.mu.Lock()
		acked = len(o.acked)
		o.mu.Unlock()
		if acked != 800 {
			t.Errorf("%d readings delivered; want the 800 good ones", acked)
		}
		var poisonSends []simSend
		for _, s := range n.since(back) {
			if s.from == 1 {
				poisonSends = append(poisonSends, s)
			}
		}
		if len(poisonSends) < 3 || len(poisonSends) > 80 {
			t.Errorf("the poison batch was sent %d times in 10 minutes; want it retried on a capped backoff", len(poisonSends))
		}
		if st := d.Status(); st.State == "retrying" || st.Failures != 0 {
			t.Errorf("status = %+v; want the link up: the poison batch is its own trouble", st)
		}
	})
}

// freshMemOutbox is a memOutbox whose newest 100 readings NextFresh hands
// out ahead of a backlog, once.
type freshMemOutbox struct {
	*memOutbox
	calls int // Next and NextFresh
	gave  bool
}

func (o *freshMemOutbox) Next(maxReadings, maxBytes int) (*reading.Batch, error) {
	o.mu.Lock()
	o.calls++
	o.mu.Unlock()
	return o.memOutbox.Next(maxReadings, maxBytes)
}

func (o *freshMemOutbox) NextFresh(maxReadings, _, minBacklog int) (*reading.Batch, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.gave || len(o.readings)-o.next < minBacklog+maxReadings {
		return nil, nil
	}
	o.gave = true
	o.stop = len(o.readings) - maxReadings // Next stops short of them
	rs := append([]reading.Reading(nil), o.readings[o.stop:]...)
	return &reading.Batch{Stream: rs[0].Stream, From: rs[0].Seq, To: rs[len(rs)-1].Seq, Readings: rs}, nil
}

// TestLinkFreshWorkerWaitsForTheLink: the worker that sends the newest
// readings ahead of a backlog is one of the link's too: while the link is
// down it does not send on its own, and when the link returns the oldest
// batch still goes first.
func TestLinkFreshWorkerWaitsForTheLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &freshMemOutbox{memOutbox: newMemOutbox(2000, nil)}
		n := &netSim{downRes: refused}
		n.setDown(true)
		d := &Drainer{Outbox: o, Sender: n, MaxReadings: 100, InFlight: 2, FreshBacklog: 200, Backoff: Backoff{Rand: seededRand()}}
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); synctest.Wait() }()
		start := time.Now()
		go d.Run(ctx)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		sends := n.since(start)
		const atFall = 3 // 2 workers and the fresh one in flight as the link fell
		probes := len(sends) - atFall
		if probes < 300 || probes > 600 {
			t.Errorf("%d probes in 5 minutes with the fresh worker; want one each 0.5–1 s", probes)
		}
		for i := atFall + 1; i < len(sends); i++ {
			if gap := sends[i].at.Sub(sends[i-1].at); gap < 500*time.Millisecond {
				t.Errorf("sends %d (seq %d) and %d (seq %d) went out %v apart while down; want one probe at a time",
					i-1, sends[i-1].from, i, sends[i].from, gap)
				break
			}
		}
		if st := d.Status(); st.Failures != 1+probes {
			t.Errorf("status = %+v; want %d failures (the fall and each probe)", st, 1+probes)
		}
		n.setDown(false)
		back := time.Now()
		for !o.settled() {
			time.Sleep(10 * time.Millisecond)
		}
		if first, _ := delivered(n.since(back)); first.from != 1 {
			t.Errorf("first batch delivered after the return starts at seq %d; want 1", first.from)
		}
		o.checkFates(t)
	})
}

// TestDrainIdleDoesNotPoll: a drainer with nothing to send waits on the
// outbox's Committed signal, not on a ticker: ten idle minutes cost a
// handful of looks at the outbox, and a commit is still sent at once.
func TestDrainIdleDoesNotPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &freshMemOutbox{memOutbox: newMemOutbox(0, nil)}
		n := &netSim{}
		d := &Drainer{Outbox: o, Sender: n, MaxReadings: 100}
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); synctest.Wait() }()
		go d.Run(ctx)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		o.mu.Lock()
		calls := o.calls
		o.readings = newMemOutbox(10, nil).readings
		o.mu.Unlock()
		if calls > 30 {
			t.Errorf("%d looks at the outbox in 10 idle minutes; want the Committed signal waited for (a few)", calls)
		}
		o.committed <- struct{}{}
		time.Sleep(100 * time.Millisecond)
		if !o.settled() {
			t.Errorf("a commit was not sent within 100 ms of its signal")
		}
	})
}
