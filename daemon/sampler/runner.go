package sampler

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// runner runs one sensor: open, read on schedule, hand over, back off.
type runner struct {
	spec       SensorSpec
	open       func(SensorSpec, *env) (sensor, error)
	env        *env
	sink       Sink
	log        *slog.Logger
	maxBackoff time.Duration

	buf []reading.Reading // what the next read fills

	// busySince is the Unix time in ns at which the current open or read
	// began, 0 between calls: a watchdog's view of a hung driver.
	busySince atomic.Int64

	mu         sync.Mutex
	status     SensorStatus      // but Last, which statusCopy makes from last
	last       []reading.Reading // the last read that returned any
	sinkFailed bool              // guarded by mu; logged once per change
	failures   int               // consecutive failed attempts
	downSince  time.Time
}

func newRunner(spec SensorSpec, open func(SensorSpec, *env) (sensor, error), e *env, sink Sink, log *slog.Logger, maxBackoff time.Duration) *runner {
	return &runner{
		spec: spec, open: open, env: e, sink: sink, log: log,
		maxBackoff: max(maxBackoff, spec.Interval),
		status:     SensorStatus{Name: spec.Name, Driver: spec.Driver, State: StateStarting},
	}
}

// nextSlot returns the first instant of the wall-clock grid of interval
// after now: a 10s sensor reads at :00, :10, :20 …, whenever it started.
func nextSlot(now time.Time, interval time.Duration) time.Time {
	return now.Truncate(interval).Add(interval)
}

// backoff returns the wait before attempt n+1 after n consecutive failures:
// the interval, doubling, capped at maxBackoff.
func (r *runner) backoff(n int) time.Duration {
	d := max(r.spec.Interval, 100*time.Millisecond)
	for i := 1; i < n && d < r.maxBackoff; i++ {
		d *= 2
	}
	return min(d, r.maxBackoff)
}

func (r *runner) run(ctx context.Context) {
	var dev sensor
	defer func() {
		if dev != nil {
			if err := dev.Close(); err != nil {
				r.log.Warn("sensor close failed", "err", err)
			}
		}
		r.mu.Lock()
		r.status.State = StateStopped
		r.status.RetryAt = time.Time{}
		r.mu.Unlock()
	}()
	timer := time.NewTimer(0) // the first attempt is immediate
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return
		}
		if dev == nil {
			r.busySince.Store(time.Now().UnixNano())
			d, err := r.open(r.spec, r.env)
			r.busySince.Store(0)
			if err != nil {
				timer.Reset(r.failed(err))
				continue
			}
			dev = d
			r.mu.Lock()
			r.status.Device = d.String()
			r.mu.Unlock()
		}
		stamp := r.env.clock.Stamp()
		r.busySince.Store(time.Now().UnixNano())
		rs, err := dev.Read(ctx, r.buf[:0])
		r.busySince.Store(0)
		r.buf = rs[:0]
		if ctx.Err() != nil && err != nil {
			return // a read cut short by shutdown is not a sensor failure
		}
		if len(rs) > 0 {
			r.hand(ctx, rs, stamp)
		}
		if err != nil && len(rs) == 0 {
			if cerr := dev.Close(); cerr != nil {
				r.log.Debug("sensor close failed", "err", cerr)
			}
			dev = nil
			timer.Reset(r.failed(err))
			continue
		}
		r.succeeded(err)
		timer.Reset(time.Until(nextSlot(time.Now(), r.spec.Interval)))
	}
}

// hand stamps the readings of one read, gives them to the sink and keeps
// them as the last.
func (r *runner) hand(ctx context.Context, rs []reading.Reading, st Stamp) {
	t := st.Time.UTC()
	var sinkErr error
	var handed, refused uint64
	for i := range rs {
		rs[i].Time, rs[i].Unsynced = t, st.Unsynced
		_, err := r.sink.Append(ctx, rs[i], st.BootTime)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			sinkErr = err
			refused++
			continue
		}
		handed++
	}
	r.mu.Lock()
	// The next read fills the buffer of the one before: rs stays as it is.
	r.last, r.buf = rs, r.last[:0]
	r.status.LastTime = t
	r.status.Readings += handed
	r.status.SinkErrors += refused
	changed := (sinkErr != nil) != r.sinkFailed
	r.sinkFailed = sinkErr != nil
	r.mu.Unlock()
	if changed {
		if sinkErr != nil {
			r.log.Error("readings refused by the spool", "err", sinkErr)
		} else {
			r.log.Info("readings accepted by the spool again")
		}
	}
}

// failed records a failed open or read and returns the wait before the
// next attempt.
func (r *runner) failed(err error) time.Duration {
	r.mu.Lock()
	r.failures++
	wait := r.backoff(r.failures)
	now := time.Now()
	prev := r.status.State
	r.status.State = StateFailing
	r.status.Errors++
	r.status.LastError = err.Error()
	r.status.LastErrorTime = now.UTC()
	r.status.RetryAt = now.Add(wait).UTC()
	if prev != StateFailing {
		r.downSince = now
	}
	r.mu.Unlock()
	if prev != StateFailing {
		r.log.Warn("sensor failing; retrying with backoff", "err", err, "retry_s", wait.Seconds())
	}
	return wait
}

// succeeded records a read that returned measurements; err is non-nil when
// some of them failed.
func (r *runner) succeeded(err error) {
	r.mu.Lock()
	prev := r.status.State
	failures := r.failures
	r.failures = 0
	r.status.RetryAt = time.Time{}
	state := StateOK
	if err != nil {
		state = StateDegraded
		r.status.Errors++
		r.status.LastError = err.Error()
		r.status.LastErrorTime = time.Now().UTC()
	}
	r.status.State = state
	down := time.Since(r.downSince)
	r.mu.Unlock()
	if prev == state {
		return
	}
	switch {
	case state == StateDegraded:
		r.log.Warn("sensor partly failing", "err", err)
	case prev == StateStarting:
		r.log.Info("sensor started", "interval_s", r.spec.Interval.Seconds())
	case prev == StateFailing:
		r.log.Info("sensor recovered", "failures", failures, "down_s", down.Seconds())
	default:
		r.log.Info("sensor recovered")
	}
}
