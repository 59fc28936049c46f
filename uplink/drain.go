package uplink

import (
	"context"
	"errors"
	"fmt"
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

// Drainer moves batches from the outbox to the sender, several in flight,
// until its context ends. A batch leaves the outbox only on Accepted or
// Rejected; anything else is retried with backoff, for as long as it takes.
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
	// a signal (default 1s).
	Idle time.Duration
	// FreshBacklog is the backlog (readings) from which one more worker
	// sends the newest readings ahead of it, so what is sampled now is
	// not held behind a week of backlog (default 4 batches; negative
	// turns it off). It needs an Outbox with NextFresh.
	FreshBacklog int

	mu     sync.Mutex
	status Status
}

// Status is the uplink's state for `outpost status` and the heartbeat.
type Status struct {
	State         string    // idle, sending, retrying, misconfigured
	LastSuccess   time.Time // zero before the first
	LastError     string
	Failures      int // consecutive
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
		d.Idle = time.Second
	}
	var limiter *rate.Limiter
	if d.RateLimit > 0 {
		limiter = rate.NewLimiter(rate.Limit(d.RateLimit), max(d.MaxReadings, int(d.RateLimit)))
	}
	d.setState("idle")

	// One goroutine takes batches from the outbox, in order; the workers
	// send them. The queue holds no more than the workers can take.
	batches := make(chan *reading.Batch)
	var wg sync.WaitGroup
	for range d.InFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				d.deliver(ctx, b, limiter)
			}
		}()
	}
	if fo, ok := d.Outbox.(freshOutbox); ok && d.FreshBacklog >= 0 {
		if d.FreshBacklog == 0 {
			d.FreshBacklog = 4 * d.MaxReadings
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.fresh(ctx, fo, limiter)
		}()
	}
	err := d.feed(ctx, batches)
	close(batches)
	wg.Wait()
	return err
}

// fresh sends the newest readings while a backlog drains.
func (d *Drainer) fresh(ctx context.Context, fo freshOutbox, limiter *rate.Limiter) {
	t := time.NewTicker(d.Idle)
	defer t.Stop()
	for {
		b, err := fo.NextFresh(d.MaxReadings, d.MaxBytes, d.FreshBacklog)
		if err != nil {
			d.Logger.Error("reading the spool's newest readings", "err", err)
		}
		if b != nil {
			d.deliver(ctx, b, limiter)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// feed hands out batches until ctx ends.
func (d *Drainer) feed(ctx context.Context, batches chan<- *reading.Batch) error {
	idle := time.NewTicker(d.Idle)
	defer idle.Stop()
	failures := 0
	for {
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
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-d.Outbox.Committed():
			case <-idle.C:
			}
			continue
		}
		select {
		case batches <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deliver sends one batch until it is accepted or rejected, splitting it
// when it is too large and setting aside the one line a rejection names.
func (d *Drainer) deliver(ctx context.Context, batch *reading.Batch, limiter *rate.Limiter) {
	queue := []*reading.Batch{batch}
	failures := 0
	for len(queue) > 0 && ctx.Err() == nil {
		b := queue[0]
		if limiter != nil && len(b.Readings) > 0 {
			if err := limiter.WaitN(ctx, min(len(b.Readings), limiter.Burst())); err != nil {
				return
			}
		}
		d.setState("sending")
		res := d.Sender.Send(ctx, b)
		switch res.Outcome {
		case Accepted:
			if err := d.Outbox.Ack(b); err != nil {
				// The receiver has it; a resend after a restart is a
				// duplicate it discards.
				d.Logger.Error("acknowledging a delivered batch", "err", err)
			}
			d.succeeded(len(b.Readings))
			failures = 0
			queue = queue[1:]
		case Rejected:
			bad, rest := b, (*reading.Batch)(nil)
			if res.Line >= 1 && res.Line <= len(b.Readings) && len(b.Readings) > 1 {
				bad, rest = b.SplitOut(res.Line - 1)
			}
			if !d.deadLetter(ctx, bad, reason(res), &failures) {
				continue
			}
			queue = queue[1:]
			if rest != nil {
				queue = append([]*reading.Batch{rest}, queue...)
			}
		case TooLarge:
			if len(b.Readings) <= 1 {
				// One reading too large for the receiver will never fit.
				if d.deadLetter(ctx, b, "too large for the receiver: "+reason(res), &failures) {
					queue = queue[1:]
				}
				continue
			}
			older, newer := b.Halves()
			queue = append([]*reading.Batch{older, newer}, queue[1:]...)
		default: // Retry
			failures++
			d.failed(res, res.Err)
			if !sleep(ctx, d.Backoff.Delay(failures, res.RetryAfter)) {
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
		d.failed(Result{Outcome: Retry}, fmt.Errorf("dead-lettering a rejected batch: %w", err))
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

// failed records a failure; the same error is logged only once.
func (d *Drainer) failed(res Result, err error) {
	if err == nil {
		err = errors.New(res.Outcome.String())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status.Failures++
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
