package uplink

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/outpost-iot/outpost/internal/reading"
)

// Outbox is what the drain loop needs of the spool (*spool.Spool is one).
// The batches it hands out carry their identity (stream and seqs), and it
// takes them back, or the parts the drain split them into, by it.
type Outbox interface {
	// Next returns the oldest committed readings not already handed out
	// in this process's life, at most maxReadings of one stream, with the
	// stream's unreported dropped ranges; nil when nothing waits.
	Next(maxReadings, maxBytes int) (*reading.Batch, error)
	// Ack deletes a delivered batch (any part of one, in any order) and
	// marks its dropped ranges reported.
	Ack(b *reading.Batch) error
	// DeadLetter moves a batch the receiver will never take aside, with
	// the reason, and reports its seqs upstream like dropped ones.
	DeadLetter(ctx context.Context, b *reading.Batch, reason string) error
	// Committed is signalled when new readings were committed.
	Committed() <-chan struct{}
}

// freshOutbox is an Outbox that can also hand out its newest readings
// ahead of a backlog.
type freshOutbox interface {
	NextFresh(maxReadings, maxBytes, minBacklog int) (*reading.Batch, error)
}

// Sender sends one batch and says what became of it (HTTP or MQTT).
type Sender interface {
	Send(ctx context.Context, b *reading.Batch) Result
}

// upSignaller is a Sender that knows when its link is back (*MQTT: the
// client reconnected): the drain then probes at once instead of waiting
// out its backoff.
type upSignaller interface {
	Up() <-chan struct{}
}

// Drainer moves batches from the outbox to the sender, several in flight,
// until its context ends. A batch leaves the outbox only on Accepted or
// Rejected; anything else is retried, for as long as it takes. The workers
// share one link state (see link): while the link is down one probe
// retries with the backoff and the others wait, and the first success
// sends the whole backlog at once, oldest first.
type Drainer struct {
	Outbox      Outbox
	Sender      Sender
	MaxReadings int     // per batch (default 500)
	MaxBytes    int     // per batch, encoded (default 256 KiB)
	InFlight    int     // batches sent at once (default 4)
	RateLimit   float64 // readings/s; 0 = no limit
	Backoff     Backoff
	Logger      *slog.Logger
	// Idle is how often an idle drainer looks at the outbox even without
	// a Committed signal, a safety net only: every commit signals
	// (default 1m).
	Idle time.Duration
	// FreshBacklog is the backlog (readings) from which one more worker
	// sends the newest readings ahead of it, so what is sampled now is
	// not held behind a week of backlog (default 4 batches; negative
	// turns it off). It needs an Outbox with NextFresh.
	FreshBacklog int

	link *link

	mu     sync.Mutex
	status Status
}

// Status is the uplink's state for `outpost status` and the heartbeat.
type Status struct {
	State         string    // idle, sending, retrying, misconfigured
	LastSuccess   time.Time // zero before the first
	LastError     string
	Failures      int // the link's: the fall plus each failed probe since
	Sent          uint64
	DeadLettered  uint64
	Misconfigured bool
}

// Status returns a copy of the current state.
func (d *Drainer) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// held is a batch a worker holds, with its rank among the others.
type held struct {
	b    *reading.Batch
	rank rank
}

// Run drains until ctx ends, then returns ctx's error. Batches in flight
// when it ends are not acknowledged: they will be read again next time.
func (d *Drainer) Run(ctx context.Context) error {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxReadings <= 0 {
		d.MaxReadings = 500
	}
	if d.MaxBytes <= 0 {
		d.MaxBytes = 256 << 10
	}
	if d.InFlight <= 0 {
		d.InFlight = 4
	}
	if d.Idle <= 0 {
		d.Idle = time.Minute
	}
	var limiter *rate.Limiter
	if d.RateLimit > 0 {
		limiter = rate.NewLimiter(rate.Limit(d.RateLimit), max(d.MaxReadings, int(d.RateLimit)))
	}
	var upSig <-chan struct{}
	if us, ok := d.Sender.(upSignaller); ok {
		upSig = us.Up()
	}
	d.link = newLink(d.Backoff, upSig)
	d.setState("idle")

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.link.run(ctx)
	}()
	// One goroutine takes batches from the outbox, in order; the workers
	// send them. The queue holds no more than the workers can take.
	batches := make(chan held)
	for range d.InFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range batches {
				d.deliver(ctx, h, limiter)
			}
		}()
	}
	var freshKick chan struct{}
	if fo, ok := d.Outbox.(freshOutbox); ok && d.FreshBacklog >= 0 {
		if d.FreshBacklog == 0 {
			d.FreshBacklog = 4 * d.MaxReadings
		}
		freshKick = make(chan struct{}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.fresh(ctx, fo, freshKick, limiter)
		}()
	}
	err := d.feed(ctx, batches, freshKick)
	close(batches)
	wg.Wait()
	return err
}

// fresh sends the newest readings while a backlog drains. It looks when
// feed passes on a commit made while a backlog waits (kick), or every
// Idle.
func (d *Drainer) fresh(ctx context.Context, fo freshOutbox, kick <-chan struct{}, limiter *rate.Limiter) {
	t := time.NewTimer(d.Idle)
	defer t.Stop()
	for n := rank(0); ; {
		b, err := fo.NextFresh(d.MaxReadings, d.MaxBytes, d.FreshBacklog)
		if err != nil {
			d.Logger.Error("reading the spool's newest readings", "err", err)
		}
		if b != nil {
			d.deliver(ctx, held{b, freshRank | n}, limiter)
			n++
			continue
		}
		t.Reset(d.Idle)
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
	}
}

// feed hands out batches until ctx ends. It waits for the outbox's
// Committed signal (or Idle) when nothing is left. A signal that comes
// while it waits for a free worker, when there is a backlog, it passes on
// to the fresh worker (freshKick, nil when there is none), which has no
// signal of its own: with no backlog there is nothing fresh to send ahead
// of it, so an idle device wakes once per commit, here.
func (d *Drainer) feed(ctx context.Context, batches chan<- held, freshKick chan<- struct{}) error {
	idle := time.NewTimer(d.Idle)
	defer idle.Stop()
	passOn := func() {
		if freshKick != nil {
			select {
			case freshKick <- struct{}{}:
			default:
			}
		}
	}
	failures := 0
	for n := rank(0); ; {
		b, err := d.Outbox.Next(d.MaxReadings, d.MaxBytes)
		if err != nil {
			failures++
			d.Logger.Error("reading the spool", "err", err, "failures", failures)
			if !sleep(ctx, d.Backoff.Delay(failures, 0)) {
				return ctx.Err()
			}
			continue
		}
		failures = 0
		if b == nil {
			idle.Reset(d.Idle)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-d.Outbox.Committed():
			case <-idle.C:
			}
			continue
		}
	send:
		for {
			select {
			case batches <- held{b, n}:
				n++
				break send
			case <-d.Outbox.Committed():
				passOn()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// deliver sends one batch until it is accepted or rejected, splitting it
// when it is too large and setting aside the one line a rejection names.
// Every send goes through the link: while it is down, the batch waits
// for the link to come up or for its turn as the probe.
func (d *Drainer) deliver(ctx context.Context, h held, limiter *rate.Limiter) {
	queue := []*reading.Batch{h.b}
	var t tries
	spoolFailures := 0
	for len(queue) > 0 && ctx.Err() == nil {
		b := queue[0]
		a, err := d.link.acquire(ctx, h.rank, &t)
		if err != nil {
			return
		}
		if limiter != nil && len(b.Readings) > 0 {
			if err := limiter.WaitN(ctx, min(len(b.Readings), limiter.Burst())); err != nil {
				return
			}
		}
		d.setState("sending")
		res := d.Sender.Send(ctx, b)
		if res.Outcome != Accepted && ctx.Err() != nil {
			return // cut short by shutdown: it says nothing about the link
		}
		switch res.Outcome {
		case Accepted:
			d.link.succeeded(a)
			if err := d.Outbox.Ack(b); err != nil {
				// The receiver has it; a resend after a restart is a
				// duplicate it discards.
				d.Logger.Error("acknowledging a delivered batch", "err", err)
			}
			d.succeeded(len(b.Readings))
			t = tries{}
			queue = queue[1:]
		case Rejected:
			d.link.answered(a)
			bad, rest := b, (*reading.Batch)(nil)
			if res.Line >= 1 && res.Line <= len(b.Readings) && len(b.Readings) > 1 {
				bad, rest = b.SplitOut(res.Line - 1)
			}
			if !d.deadLetter(ctx, bad, reason(res), &spoolFailures) {
				continue
			}
			t = tries{}
			queue = queue[1:]
			if rest != nil {
				queue = append([]*reading.Batch{rest}, queue...)
			}
		case TooLarge:
			d.link.answered(a)
			if len(b.Readings) <= 1 {
				// One reading too large for the receiver will never fit.
				if d.deadLetter(ctx, b, "too large for the receiver: "+reason(res), &spoolFailures) {
					t = tries{}
					queue = queue[1:]
				}
				continue
			}
			older, newer := b.Halves()
			queue = append([]*reading.Batch{older, newer}, queue[1:]...)
		default: // Retry
			v := d.link.failed(a, h.rank, &t, res)
			if v.counted {
				d.failed(res, res.Err, v.failures)
			}
			if v.suspected {
				d.suspected(b, res)
			}
			if v.own > 0 && !sleep(ctx, v.own) {
				return
			}
		}
	}
}

// deadLetter sets a batch aside; when the spool cannot, it backs off and
// returns false so the batch is sent again (and, rejected again, set aside
// then).
func (d *Drainer) deadLetter(ctx context.Context, b *reading.Batch, why string, failures *int) bool {
	if err := d.Outbox.DeadLetter(ctx, b, why); err != nil {
		*failures++
		d.Logger.Error("dead-lettering a rejected batch; retrying", "err", err, "failures", *failures)
		sleep(ctx, d.Backoff.Delay(*failures, 0))
		return false
	}
	d.deadLettered(b, why)
	return true
}

func reason(res Result) string {
	if res.Err == nil {
		return res.Outcome.String()
	}
	return res.Err.Error()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (d *Drainer) setState(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Failures == 0 {
		d.status.State = s
	}
}

// succeeded records a delivery and logs a recovery once.
func (d *Drainer) succeeded(readings int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Failures > 0 {
		down := time.Duration(0)
		if !d.status.LastSuccess.IsZero() {
			down = time.Since(d.status.LastSuccess)
		}
		d.Logger.Info("upload succeeded again", "after_failures", d.status.Failures, "down_s", int(down.Seconds()))
	}
	d.status.State = "sending"
	d.status.Failures = 0
	d.status.LastSuccess = time.Now()
	d.status.LastError = ""
	d.status.Misconfigured = false
	d.status.Sent += uint64(readings)
}

// failed records a failure of the link (the fall or a failed probe),
// failures its count now; the same error is logged only once.
func (d *Drainer) failed(res Result, err error, failures int) {
	if err == nil {
		err = errors.New(res.Outcome.String())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status.Failures = failures
	d.status.Misconfigured = res.Misconfigured
	d.status.State = "retrying"
	if res.Misconfigured {
		d.status.State = "misconfigured"
	}
	if msg := err.Error(); msg != d.status.LastError {
		d.status.LastError = msg
		level := slog.LevelWarn
		if res.Misconfigured {
			level = slog.LevelError
		}
		d.Logger.Log(context.Background(), level, "upload failing; retrying with backoff", "err", msg, "failures", d.status.Failures)
	}
}

// suspected logs a batch that fails where others get through: it is
// retried on its own backoff from now on (see link).
func (d *Drainer) suspected(b *reading.Batch, res Result) {
	d.Logger.Warn("a batch keeps failing while others are delivered; retrying it on its own backoff",
		"stream", b.Stream.String(), "first_seq", b.From, "last_seq", b.To, "err", reason(res))
}

func (d *Drainer) deadLettered(b *reading.Batch, why string) {
	d.mu.Lock()
	d.status.DeadLettered += uint64(len(b.Readings))
	d.mu.Unlock()
	attrs := []any{"readings", len(b.Readings), "err", why}
	if len(b.Readings) > 0 {
		attrs = append(attrs, "stream", b.Stream.String(), "first_seq", b.From)
	}
	d.Logger.Warn("batch rejected by the receiver; dead-lettered", attrs...)
}
