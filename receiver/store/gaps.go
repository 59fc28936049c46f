package store

import (
	"slices"

	"github.com/outpost-iot/outpost/internal/reading"
)

// missingRanges returns the seq ranges in [1, highest] that are in neither
// have (sorted, disjoint ranges of stored seqs) nor dropped.
func missingRanges(highest uint64, have, dropped [][2]uint64) [][2]uint64 {
	covered := append(slices.Clone(have), dropped...)
	slices.SortFunc(covered, func(a, b [2]uint64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	out := [][2]uint64{}
	next := uint64(1)
	for _, c := range covered {
		if c[0] > next {
			out = append(out, [2]uint64{next, min(c[0]-1, highest)})
		}
		if c[1]+1 > next {
			next = c[1] + 1
		}
		if next > highest {
			break
		}
	}
	if next <= highest {
		out = append(out, [2]uint64{next, highest})
	}
	// Drop ranges clipped away entirely by highest.
	return slices.DeleteFunc(out, func(r [2]uint64) bool { return r[0] > r[1] || r[0] > highest })
}

// countRanges returns how many seqs the ranges hold, counting overlaps once.
func countRanges(rs [][2]uint64) uint64 {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b [2]uint64) int {
		if a[0] < b[0] {
			return -1
		} else if a[0] > b[0] {
			return 1
		}
		return 0
	})
	var n, next uint64
	for _, r := range rs {
		lo := max(r[0], next)
		if r[1] >= lo {
			n += r[1] - lo + 1
			next = r[1] + 1
		}
	}
	return n
}

// Summarize accounts for one stream: what is missing is what is neither
// stored nor reported dropped or dead-lettered, up to the highest seq.
func Summarize(stream reading.StreamID, highest, received uint64, dropped, dead [][2]uint64) StreamSummary {
	var clipped [][2]uint64
	for _, d := range append(slices.Clone(dropped), dead...) {
		if d[0] <= highest {
			clipped = append(clipped, [2]uint64{d[0], min(d[1], highest)})
		}
	}
	var missing uint64
	if have := received + countRanges(clipped); highest > have {
		missing = highest - have
	}
	return StreamSummary{Stream: stream.String(), HighestSeq: highest, Received: received, Dropped: countRanges(dropped),
		DeadLettered: countRanges(dead), Missing: missing}
}

// IslandsSQL finds the runs of consecutive stored seqs of a device (the
// "gaps and islands" query: seq - row_number() is constant along a run).
// param is the dialect's first placeholder.
func IslandsSQL(param string) string {
	return `SELECT stream, min(seq), max(seq) FROM (
		SELECT stream, seq, seq - row_number() OVER (PARTITION BY stream ORDER BY seq) AS grp
		FROM readings WHERE device_id = ` + param + `) AS runs
		GROUP BY stream, grp ORDER BY stream, min(seq)`
}

// Island is a run of consecutive stored seqs.
type Island struct {
	Stream   reading.StreamID
	From, To uint64
}

// Rows is what the scans below read of a query's result, as pgx.Rows and
// *sql.Rows both offer it. The caller closes the rows.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanIslands reads the rows of IslandsSQL.
func ScanIslands(rows Rows) ([]Island, error) {
	var is []Island
	for rows.Next() {
		var st, from, to int64
		if err := rows.Scan(&st, &from, &to); err != nil {
			return nil, err
		}
		is = append(is, Island{reading.StreamID(st), uint64(from), uint64(to)})
	}
	return is, rows.Err()
}

// ScanRanges reads rows of (stream, first seq, last seq), such as the
// dropped ranges a device reported, into ranges per stream.
func ScanRanges(rows Rows) (map[reading.StreamID][][2]uint64, error) {
	out := map[reading.StreamID][][2]uint64{}
	for rows.Next() {
		var st, from, to int64
		if err := rows.Scan(&st, &from, &to); err != nil {
			return nil, err
		}
		out[reading.StreamID(st)] = append(out[reading.StreamID(st)], [2]uint64{uint64(from), uint64(to)})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ScanSummaries reads rows of (stream, highest seq, received, conflicts,
// corrected), a device's streams, into their summaries with the ranges
// the device reported dropped and keeps dead-lettered.
func ScanSummaries(rows Rows, dropped, dead map[reading.StreamID][][2]uint64) ([]StreamSummary, error) {
	out := []StreamSummary{}
	for rows.Next() {
		var stream, highest, received, conflicts, corrected int64
		if err := rows.Scan(&stream, &highest, &received, &conflicts, &corrected); err != nil {
			return nil, err
		}
		st := reading.StreamID(stream)
		sum := Summarize(st, uint64(highest), uint64(received), dropped[st], dead[st])
		sum.Conflicts, sum.Corrected = uint64(conflicts), uint64(corrected)
		out = append(out, sum)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// BuildGaps turns the runs of stored seqs (ordered by stream, then seq),
// the reported dropped and dead-lettered ranges and the conflicts into
// per-stream gaps.
func BuildGaps(is []Island, dropped, dead map[reading.StreamID][][2]uint64, conflicts map[reading.StreamID][]Conflict) []StreamGaps {
	have := map[reading.StreamID][][2]uint64{}
	var order []reading.StreamID
	for _, i := range is {
		if _, ok := have[i.Stream]; !ok {
			order = append(order, i.Stream)
		}
		have[i.Stream] = append(have[i.Stream], [2]uint64{i.From, i.To})
	}
	for _, m := range []map[reading.StreamID][][2]uint64{dropped, dead} {
		for st := range m {
			if _, ok := have[st]; !ok {
				order = append(order, st)
				have[st] = nil
			}
		}
	}
	for st := range conflicts {
		if _, ok := have[st]; !ok {
			order = append(order, st)
			have[st] = nil
		}
	}
	slices.Sort(order)
	out := []StreamGaps{}
	for _, st := range order {
		h := have[st]
		var highest uint64
		if len(h) > 0 {
			highest = h[len(h)-1][1]
		}
		d := dropped[st]
		if d == nil {
			d = [][2]uint64{}
		}
		dl := dead[st]
		if dl == nil {
			dl = [][2]uint64{}
		}
		c := conflicts[st]
		if c == nil {
			c = []Conflict{}
		}
		out = append(out, StreamGaps{Stream: st.String(), HighestSeq: highest,
			Missing: missingRanges(highest, h, append(slices.Clone(d), dl...)), Dropped: d, DeadLettered: dl, Conflicts: c})
	}
	return out
}
