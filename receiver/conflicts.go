package receiver

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// A conflict is a reading that arrived under a (device, stream, seq)
// already stored with other contents (sensor, unit, value or device time):
// the stored reading stays, the conflict is counted per stream and in the
// metrics, kept as a row naming both versions, shown by the gaps API, and
// logged once per device and stream. Such a seq reused with new contents
// is what a device that lost its spool's seq state would send.

// maxConflictsShown bounds the conflicts the gaps API lists per device
// (the newest); the per-stream counts cover them all.
const maxConflictsShown = 1000

// Conflict is one conflicting reading and the stored one it lost to.
type Conflict struct {
	Seq uint64 `json:"seq"`
	// Stored is the reading kept (nil for conflicts recorded before the
	// receiver kept both versions); Received, the one set aside.
	Stored     *ConflictVersion `json:"stored"`
	Received   ConflictVersion  `json:"received"`
	ReceivedAt time.Time        `json:"received_at"`
}

// ConflictVersion is what decides a conflict: sensor, value, unit, time.
type ConflictVersion struct {
	Sensor    string    `json:"sensor"`
	Value     float64   `json:"value"`
	Unit      string    `json:"unit,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	Clock     string    `json:"clock,omitempty"` // "unsynced" or empty
}

func clockOf(unsynced bool) string {
	if unsynced {
		return "unsynced"
	}
	return ""
}

// statusDeadLetters returns the dead_letter_ranges of a device heartbeat
// (JSON, as sent), and whether it has them: a status without them (the
// MQTT last will's {"state":"offline"}) leaves the known ones as they are.
func statusDeadLetters(status []byte) (any, bool) {
	var st struct {
		DeadLetterRanges json.RawMessage `json:"dead_letter_ranges"`
	}
	if json.Unmarshal(status, &st) != nil || len(st.DeadLetterRanges) == 0 || st.DeadLetterRanges[0] != '[' {
		return nil, false
	}
	return string(st.DeadLetterRanges), true
}

// deadLetterRanges reads the dead_letter_ranges a device last reported:
// the seq ranges it keeps dead-lettered, per stream.
func deadLetterRanges(raw []byte) map[reading.StreamID][][2]uint64 {
	out := map[reading.StreamID][][2]uint64{}
	var dls []struct {
		Stream string      `json:"stream"`
		Ranges [][2]uint64 `json:"ranges"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &dls) != nil {
		return out
	}
	for _, d := range dls {
		id, err := reading.ParseStreamID(d.Stream)
		if err != nil {
			continue
		}
		for _, r := range d.Ranges {
			if r[0] >= 1 && r[0] <= r[1] {
				out[id] = append(out[id], r)
			}
		}
	}
	return out
}

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

func (c *conflictLog) note(log *slog.Logger, transport, device string, res Result) {
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
