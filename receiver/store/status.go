package store

import (
	"encoding/json"

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

// StatusDeadLetters returns the dead_letter_ranges of a device heartbeat
// (JSON, as sent), and whether it has them: a status without them (the
// MQTT last will's {"state":"offline"}) leaves the known ones as they are.
func StatusDeadLetters(status []byte) (any, bool) {
	var st struct {
		DeadLetterRanges json.RawMessage `json:"dead_letter_ranges"`
	}
	if json.Unmarshal(status, &st) != nil || len(st.DeadLetterRanges) == 0 || st.DeadLetterRanges[0] != '[' {
		return nil, false
	}
	return string(st.DeadLetterRanges), true
}

// DeadLetterRanges reads the dead_letter_ranges a device last reported:
// the seq ranges it keeps dead-lettered, per stream.
func DeadLetterRanges(raw []byte) map[reading.StreamID][][2]uint64 {
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
