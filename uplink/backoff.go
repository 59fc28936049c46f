package uplink

import (
	"math/rand/v2"
	"time"
)

// Backoff computes the wait before the next attempt after consecutive
// failures: exponential with full jitter (a random wait between zero and
// Base·2^failures, capped at Max), so a fleet that lost its link at the same
// moment does not come back in lockstep. Max stays low (30s by default) so
// a returning link is used within a minute; a peer's Retry-After is
// honoured up to MaxRetryAfter.
type Backoff struct {
	Base          time.Duration // default 500ms
	Max           time.Duration // default 30s
	MaxRetryAfter time.Duration // default 5m
	// UnreachableMax bounds the wait after a failure that never reached
	// the peer (Result.Unreachable): a refused connection costs nothing
	// to try again, and a link that returns is used within it (default
	// 1s, jittered between half and all of it).
	UnreachableMax time.Duration
	// Rand returns a float in [0, 1); nil means math/rand/v2. Tests set it.
	Rand func() float64
}

// Delay returns the wait after the given number of consecutive failures
// (1 for the first), honouring retryAfter when the peer gave one.
func (b Backoff) Delay(failures int, retryAfter time.Duration) time.Duration {
	base, maxDelay, maxRA := b.Base, b.Max, b.MaxRetryAfter
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if maxDelay <= 0 {
		maxDelay = 30 * time.Second
	}
	if maxRA <= 0 {
		maxRA = 5 * time.Minute
	}
	if retryAfter > 0 {
		return min(retryAfter, maxRA)
	}
	if failures < 1 {
		failures = 1
	}
	ceiling := maxDelay
	if failures < 32 {
		if d := base << (failures - 1); d > 0 && d < maxDelay {
			ceiling = d
		}
	}
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(ceiling))
}

// UnreachableDelay returns the wait after an unreachable failure: between
// half and all of UnreachableMax.
func (b Backoff) UnreachableDelay() time.Duration {
	maxDelay := b.UnreachableMax
	if maxDelay <= 0 {
		maxDelay = time.Second
	}
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return maxDelay/2 + time.Duration(r()*float64(maxDelay/2))
}
