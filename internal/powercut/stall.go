//go:build !arm

package powercut

import (
	"context"
	"sync"
)

// syncGate holds fsyncs back while a test stalls them: a card or disk that
// stops answering, which leaves the program that syncs stuck in the call
// (what a watchdog has to notice) while reads and writes go on.
type syncGate struct {
	mu     sync.Mutex
	closed chan struct{} // nil while syncs pass; closed to let them through
}

// stall makes every later fsync wait until open.
func (g *syncGate) stall() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

// open lets waiting and later fsyncs through.
func (g *syncGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// wait returns once syncs may pass, or false if ctx ended first (the
// kernel interrupts the request when its caller is killed).
func (g *syncGate) wait(ctx context.Context) bool {
	g.mu.Lock()
	ch := g.closed
	g.mu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// StallSyncs makes every fsync, fdatasync and directory fsync on the mount
// block until ResumeSyncs (or the caller is killed, when it fails with
// EINTR), as a dying SD card does: the writer is stuck in a call, not
// failing. Unmount and Cut resume them first.
func (f *FS) StallSyncs() { f.j.gate.stall() }

// ResumeSyncs lets stalled and later syncs through.
func (f *FS) ResumeSyncs() { f.j.gate.open() }
