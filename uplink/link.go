package uplink

import (
	"context"
	"sync"
	"time"
)

// link is the drain's one view of the way to the receiver (or broker):
// up or down, one failure count and one backoff, shared by every worker,
// so that when the link returns the whole backlog goes out at once and
// oldest first, instead of each worker sleeping out a timer of its own.
//
// The rules:
//
//   - While the link is up, every worker sends as it likes. A failed send
//     takes the link down (the fall): the backoff starts and every worker
//     waits for the link, not for a timer of its own.
//   - While the link is down, exactly one batch at a time is the probe,
//     sent when the backoff has run out (or at once when the sender says it
//     is connected again, see upSignaller). The probe is the oldest batch
//     any worker holds (the fresh worker's counts as the newest).
//   - The wait before the next probe depends on why the last one failed.
//     Unreachable (Result.Unreachable: refused, reset, DNS, a dial
//     timeout; over MQTT, not connected) is cheap to try again: within
//     Backoff.UnreachableMax (0.5–1 s). A failure the receiver answered
//     (5xx, 429, a timeout waiting for the answer) backs off exponentially,
//     counting such answers since the last unreachable failure, and
//     honours Retry-After.
//   - The first success marks the link up, resets the backoff and wakes
//     every waiting worker at once.
//
// One probe against a batch-specific failure (a receiver bug that answers
// 500 to one batch's content, every time):
//
//   - An answered failure may be the batch's own, so after one the probe
//     turn passes to the next-oldest batch (wrapping round); if that batch
//     gets through, the link is up and the others drain. An unreachable
//     failure says nothing about the batch: the turn stays with the
//     oldest. So after an outage of refusals the oldest batch is always
//     the first one delivered; after an outage of 5xx answers the first
//     may be another, the oldest going out with the rest at once.
//   - A batch that fails again (not unreachable) after another batch was
//     delivered since its last failure is suspect: the link evidently
//     works and this batch does not. Until it is delivered or rejected, a
//     suspect batch backs off on its own timer (its own failure count,
//     exponential, Retry-After honoured), never takes the link down or
//     counts in its failures, and is the probe only when no other batch
//     waits. No batch is delivered in a real outage, so none becomes
//     suspect in one.
type link struct {
	backoff Backoff
	upSig   <-chan struct{} // the sender's "connected again", nil if none

	mu        sync.Mutex
	down      bool
	failures  int           // the fall plus each failed probe, 0 while up
	streak    int           // of those, the ones the peer answered, since the last unreachable one
	successes uint64        // deliveries in this life
	ups       uint64        // times the link came up again
	upCh      chan struct{} // closed when the link comes up again
	next      time.Time     // no probe before this
	probe     uint64        // the probe in flight, 0 if none
	probes    uint64        // probe ids handed out
	passed    uint64        // the probe turn passed on from this rank...
	hasPassed bool          // ...if set
	waiters   []*linkWaiter
	changed   chan struct{} // wakes the scheduler (buffered, one pending is enough)
}

func newLink(b Backoff, upSig <-chan struct{}) *link {
	return &link{backoff: b, upSig: upSig, changed: make(chan struct{}, 1)}
}

// rank orders batches oldest first: the order the outbox handed them out,
// and the fresh worker's (the newest readings) after all of those.
type rank uint64

const freshRank rank = 1 << 63

// tries is what the link knows of one batch a worker holds.
type tries struct {
	failures int    // its own, for its own backoff once suspect
	failed   bool   // it failed at least once
	failedAt uint64 // link.successes at its last failure
	suspect  bool
}

// linkWaiter is a batch waiting for the link or for its probe turn.
type linkWaiter struct {
	rank    rank
	suspect bool
	id      uint64        // its probe id once chosen
	turn    chan struct{} // closed when it is the probe
}

// attempt is a worker's licence to send one batch.
type attempt struct {
	probe uint64 // the probe id, 0 when sent on an up link
	ups   uint64 // link.ups when it was granted
}

// verdict is what a worker does after a failed send.
type verdict struct {
	// own > 0: back off alone this long (a suspect batch), then try again.
	// Otherwise try again at once: the link decides when.
	own time.Duration
	// counted: the fall or a failed probe, failures the link's count now.
	counted  bool
	failures int
	// suspected: the batch just became suspect.
	suspected bool
}

func (l *link) kick() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// acquire returns when the batch may be sent: at once while the link is
// up, else when it comes up or when this batch is the probe.
func (l *link) acquire(ctx context.Context, r rank, t *tries) (attempt, error) {
	l.mu.Lock()
	if !l.down {
		a := attempt{ups: l.ups}
		l.mu.Unlock()
		return a, nil
	}
	w := &linkWaiter{rank: r, suspect: t.suspect, turn: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	up := l.upCh
	l.kick()
	l.mu.Unlock()
	select {
	case <-w.turn:
		l.mu.Lock()
		defer l.mu.Unlock()
		return attempt{probe: w.id, ups: l.ups}, nil
	case <-up:
		l.mu.Lock()
		defer l.mu.Unlock()
		return attempt{ups: l.ups}, nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		l.removeWaiter(w)
		if w.id != 0 && l.probe == w.id {
			l.probe = 0
			l.kick()
		}
		return attempt{}, ctx.Err()
	}
}

func (l *link) removeWaiter(w *linkWaiter) {
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			return
		}
	}
}

// succeeded records a delivery; it brings the link up if it was down.
func (l *link) succeeded(a attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.successes++
	if a.probe != 0 && l.probe == a.probe {
		l.probe = 0
	}
	if !l.down {
		return
	}
	l.down, l.failures, l.probe, l.hasPassed = false, 0, 0, false
	l.ups++
	close(l.upCh)
	l.waiters = nil
	l.kick()
}

// answered records a send the receiver answered with neither success nor
// a retry (a rejection, too large): nothing about the link, but a probe
// that got it is over and the next one may go at once.
func (l *link) answered(a attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.probe != 0 && l.probe == a.probe {
		l.probe = 0
		l.next = time.Time{}
		l.kick()
	}
}

// failed records a failed send of the batch ranked r and says what the
// worker does next.
func (l *link) failed(a attempt, r rank, t *tries, res Result) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	t.failures++
	isProbe := a.probe != 0 && l.probe == a.probe
	if isProbe {
		l.probe = 0
		l.kick()
	}
	var v verdict
	if !res.Unreachable && t.failed && l.successes > t.failedAt && !t.suspect {
		t.suspect, v.suspected = true, true
		t.failures = 1 // its own backoff starts now
	}
	t.failed, t.failedAt = true, l.successes
	if t.suspect && !res.Unreachable {
		// The batch's own trouble: the link's state and backoff stay as
		// they are, and another batch may probe at once.
		v.own = l.backoff.Delay(t.failures, res.RetryAfter)
		return v
	}
	pass := func() {
		l.hasPassed, l.passed = !res.Unreachable, uint64(r)
	}
	switch {
	case a.ups != l.ups:
		// Sent before the link last came up: old news about the link.
	case !l.down: // the fall
		l.down, l.failures, l.streak = true, 0, 0
		l.upCh = make(chan struct{})
		fallthrough
	case isProbe:
		l.failures++
		l.streak++
		if res.Unreachable {
			l.streak = 0
		}
		l.next = now.Add(l.delay(res))
		pass()
		v.counted = true
	case res.RetryAfter > 0:
		// In flight when the link fell: only the receiver's own wish
		// counts.
		if until := now.Add(l.delay(res)); until.After(l.next) {
			l.next = until
		}
	}
	v.failures = l.failures
	return v
}

// delay is the wait before the next probe after res. The exponent counts
// the answered failures since the last unreachable one, so a receiver
// that answers 503 as it comes back after a long outage is not met with
// the backoff's cap at once.
func (l *link) delay(res Result) time.Duration {
	if res.Unreachable && res.RetryAfter <= 0 {
		return l.backoff.UnreachableDelay()
	}
	return l.backoff.Delay(max(l.streak, 1), res.RetryAfter)
}

// run chooses the probes until ctx ends: while the link is down and no
// probe is in flight, it waits for the backoff (or the sender's signal
// that it is connected again) and gives the turn to the oldest waiting
// batch, past the one the turn was passed on from. It sleeps on channels
// only: no timer runs while the link is up.
func (l *link) run(ctx context.Context) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		ready := l.down && l.probe == 0 && len(l.waiters) > 0
		wait := time.Until(l.next)
		if ready && wait <= 0 {
			w := l.pick()
			l.removeWaiter(w)
			l.probes++
			w.id, l.probe = l.probes, l.probes
			close(w.turn)
		}
		l.mu.Unlock()
		var fire <-chan time.Time
		if ready && wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-l.changed:
		case <-fire:
		case <-l.upSig:
			// The sender is connected again: probe now, if anything waits.
			l.mu.Lock()
			l.next = time.Time{}
			l.mu.Unlock()
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// pick returns the waiter to probe with: not suspect before suspect, then
// the oldest past the rank the turn was passed on from, then the oldest.
// l.mu is held and l.waiters is not empty.
func (l *link) pick() *linkWaiter {
	key := func(w *linkWaiter) (bool, bool, rank) {
		return w.suspect, l.hasPassed && uint64(w.rank) <= l.passed, w.rank
	}
	best := l.waiters[0]
	for _, w := range l.waiters[1:] {
		s1, p1, r1 := key(w)
		s2, p2, r2 := key(best)
		if s1 != s2 {
			if !s1 {
				best = w
			}
			continue
		}
		if p1 != p2 {
			if !p1 {
				best = w
			}
			continue
		}
		if r1 < r2 {
			best = w
		}
	}
	return best
}
