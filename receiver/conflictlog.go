package receiver

import (
	"log/slog"
	"sync"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

// conflictLog warns once per device and stream about conflicts: a device
// reusing seqs sends many, and the count (metrics, accounting) says how
// many; the log says that it started. A batch names its first conflict
// only, so a batch of several streams (an import) warns about the first
// conflicting one; the others are counted and listed all the same.
type conflictLog struct {
	mu   sync.Mutex
	seen map[conflictKey]struct{}
}

type conflictKey struct {
	device string
	stream reading.StreamID
}

// maxConflictKeys bounds the memory of conflictLog; past it, it forgets
// and may warn again.
const maxConflictKeys = 100_000

func (c *conflictLog) note(log *slog.Logger, transport, device string, res store.Result) {
	if res.Conflicts == 0 {
		return
	}
	k := conflictKey{device, res.ConflictStream}
	c.mu.Lock()
	if c.seen == nil || len(c.seen) >= maxConflictKeys {
		c.seen = map[conflictKey]struct{}{}
	}
	_, seen := c.seen[k]
	c.seen[k] = struct{}{}
	c.mu.Unlock()
	if seen {
		return
	}
	log.Warn("readings conflict with stored ones under the same (device, stream, seq); the stored ones are kept",
		"device", device, "stream", res.ConflictStream.String(), "seq", res.ConflictSeq, "conflicts", res.Conflicts,
		"transport", transport, "hint", "GET /v1/devices/"+device+"/gaps shows both versions; later conflicts of this stream are counted, not logged")
}
