package store

import (
	"cmp"
	"encoding/json"
	"maps"
	"math"
	"slices"

	"github.com/outpost-iot/outpost/internal/reading"
)

// HeartbeatClock returns the clock state a heartbeat reports, or "".
func HeartbeatClock(status []byte) string {
	var hb struct {
		Clock string `json:"clock"`
	}
	if json.Unmarshal(status, &hb) != nil || (hb.Clock != "synced" && hb.Clock != "unsynced") {
		return ""
	}
	return hb.Clock
}

// MaxDeadLetterRanges bounds the dead-lettered seq ranges kept of a
// heartbeat (all streams together, after merging); the rest are left
// out, as a device that trims its heartbeat would.
const MaxDeadLetterRanges = 1000

// deadLetters is the dead_letter_ranges of a heartbeat.
type deadLetters []struct {
	Stream string      `json:"stream"`
	Ranges [][2]uint64 `json:"ranges"`
}

// StatusDeadLetters returns the dead_letter_ranges of a device heartbeat
// as JSON to keep, and whether it has them: a status without them (the
// MQTT last will's {"state":"offline"}) leaves the known ones as they
// are. What is kept is clamped: valid stream ids only, ranges within
// [1, 2^63-1] (the seqs a store can hold), merged per stream, at most
// MaxDeadLetterRanges of them.
func StatusDeadLetters(status []byte) (any, bool) {
	var st struct {
		DeadLetterRanges json.RawMessage `json:"dead_letter_ranges"`
	}
	if json.Unmarshal(status, &st) != nil || len(st.DeadLetterRanges) == 0 || st.DeadLetterRanges[0] != '[' {
		return nil, false
	}
	m := DeadLetterRanges(st.DeadLetterRanges)
	out := deadLetters{}
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, struct {
			Stream string      `json:"stream"`
			Ranges [][2]uint64 `json:"ranges"`
		}{id.String(), m[id]})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, false
	}
	return string(b), true
}

// DeadLetterRanges reads the dead_letter_ranges a device last reported:
// the seq ranges it keeps dead-lettered, per stream, clamped as
// StatusDeadLetters says.
func DeadLetterRanges(raw []byte) map[reading.StreamID][][2]uint64 {
	out := map[reading.StreamID][][2]uint64{}
	var dls deadLetters
	if len(raw) == 0 || json.Unmarshal(raw, &dls) != nil {
		return out
	}
	for _, d := range dls {
		id, err := reading.ParseStreamID(d.Stream)
		if err != nil {
			continue
		}
		for _, r := range d.Ranges {
			if r[0] >= 1 && r[0] <= r[1] && r[0] <= math.MaxInt64 {
				out[id] = append(out[id], [2]uint64{r[0], min(r[1], math.MaxInt64)})
			}
		}
	}
	n := 0
	for _, id := range slices.Sorted(maps.Keys(out)) {
		rs := mergeRanges(out[id])
		if n+len(rs) > MaxDeadLetterRanges {
			rs = rs[:MaxDeadLetterRanges-n]
		}
		n += len(rs)
		if len(rs) == 0 {
			delete(out, id)
			continue
		}
		out[id] = rs
	}
	return out
}

// mergeRanges sorts ranges and merges those that overlap or touch.
func mergeRanges(rs [][2]uint64) [][2]uint64 {
	slices.SortFunc(rs, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	var out [][2]uint64
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}
