package daemon

import (
	"encoding/json"
	"fmt"
)

// maxHeartbeatBytes is the receiver's limit on a heartbeat (POST
// /v1/status); a larger one is refused, so the daemon trims its own.
const maxHeartbeatBytes = 64 << 10

// maxHeartbeatRanges is as many dead-letter ranges as the receiver keeps
// of a heartbeat (it clamps the rest away): sending more only costs bytes.
const maxHeartbeatRanges = 1000

// heartbeat encodes st for upstream, within limit bytes. Only the
// dead-letter ranges grow without bound (a spool whose every other
// reading was rejected); when they would not fit, the first ones that do
// are kept and DeadLetterRangesTrimmed says how many were left out. The
// full list stays in `outpost status` and `outpost spool dead`.
func heartbeat(st Status, limit int) ([]byte, error) {
	total := 0
	for _, s := range st.DeadLetterRanges {
		total += len(s.Ranges)
	}
	keep := min(total, maxHeartbeatRanges)
	for {
		body, err := json.Marshal(withRanges(st, keep, total))
		if err != nil {
			return nil, err
		}
		if len(body) <= limit {
			return body, nil
		}
		if keep == 0 {
			return nil, fmt.Errorf("heartbeat is %d bytes even without dead-letter ranges; the receiver takes %d", len(body), limit)
		}
		// Shrink in proportion to the excess, by at least one range.
		keep = min(keep-1, keep*limit/len(body))
	}
}

// withRanges is st with only the first keep of its total dead-letter
// ranges.
func withRanges(st Status, keep, total int) Status {
	if keep == total {
		return st
	}
	st.DeadLetterRangesTrimmed = total - keep
	var out []StreamRanges
	for _, s := range st.DeadLetterRanges {
		if keep == 0 {
			break
		}
		n := min(len(s.Ranges), keep)
		out = append(out, StreamRanges{Stream: s.Stream, Ranges: s.Ranges[:n]})
		keep -= n
	}
	st.DeadLetterRanges = append([]StreamRanges{}, out...)
	return st
}
