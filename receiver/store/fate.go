package store

import (
	"math"

	"github.com/outpost-iot/outpost/internal/reading"
)

// Fate is what became of one reading of a batch.
type Fate uint8

// The fates of a reading.
const (
	FateNew Fate = iota
	FateDuplicate
	FateConflict
	FateCorrected
)

// Classify decides what a reading whose key is already stored is: the
// same (duplicate), a clock correction of an unsynced reading, or a
// conflict. It compares sensor, unit, the value's float64 bits and the
// device time at microsecond precision (what PostgreSQL keeps).
func Classify(stored, in *reading.Reading) Fate {
	if stored.Sensor != in.Sensor || stored.Unit != in.Unit ||
		math.Float64bits(stored.Value) != math.Float64bits(in.Value) {
		return FateConflict
	}
	if stored.Time.UnixMicro() == in.Time.UnixMicro() {
		return FateDuplicate
	}
	if stored.Unsynced && !in.Unsynced {
		return FateCorrected
	}
	return FateConflict
}

// Key is what a device's reading is stored under, once.
type Key struct {
	Stream reading.StreamID
	Seq    uint64
}

// Dedupe splits a batch's readings into the first occurrence of each key
// (to store) and the fates of later occurrences, classified against the
// first. fates has one entry per reading; first occurrences are FateNew.
func Dedupe(rs []reading.Reading) (first []int, fates []Fate) {
	fates = make([]Fate, len(rs))
	first = make([]int, 0, len(rs))
	if increasing(rs) { // no key twice: all first occurrences
		for i := range rs {
			first = append(first, i)
		}
		return first, fates
	}
	seen := make(map[Key]int, len(rs))
	for i := range rs {
		k := Key{rs[i].Stream, rs[i].Seq}
		if j, ok := seen[k]; ok {
			f := Classify(&rs[j], &rs[i])
			if f == FateCorrected { // within one batch the first one stands
				f = FateConflict
			}
			fates[i] = f
			continue
		}
		seen[k] = i
		first = append(first, i)
	}
	return first, fates
}

// increasing reports whether the seqs of each stream rise strictly through
// rs, for at most a few streams: the usual batch, a run of one stream,
// which then holds no key twice and needs no map to tell.
func increasing(rs []reading.Reading) bool {
	var last [4]Key
	n := 0
next:
	for i := range rs {
		r := &rs[i]
		for j := range n {
			if last[j].Stream == r.Stream {
				if r.Seq <= last[j].Seq {
					return false
				}
				last[j].Seq = r.Seq
				continue next
			}
		}
		if n == len(last) {
			return false
		}
		last[n] = Key{r.Stream, r.Seq}
		n++
	}
	return true
}

// Tally counts the fates of rs into a Result.
func Tally(rs []reading.Reading, fates []Fate) Result {
	var r Result
	for i, f := range fates {
		switch f {
		case FateNew:
			r.Accepted++
		case FateDuplicate:
			r.Duplicates++
		case FateConflict:
			if r.Conflicts == 0 {
				r.ConflictStream, r.ConflictSeq = rs[i].Stream, rs[i].Seq
			}
			r.Conflicts++
		case FateCorrected:
			r.Accepted++
			r.Corrected++
		}
	}
	return r
}

// StreamDelta is how a batch changes the accounting of one stream.
type StreamDelta struct {
	Stream               reading.StreamID
	HighestSeq           uint64
	Added                int64
	Conflicts, Corrected int64
}

// StreamDeltas sums, per stream, the readings a batch newly stored.
func StreamDeltas(rs []reading.Reading, fates []Fate) []StreamDelta {
	var out []StreamDelta
	idx := map[reading.StreamID]int{}
	for i := range rs {
		j, ok := idx[rs[i].Stream]
		if !ok {
			j = len(out)
			idx[rs[i].Stream] = j
			out = append(out, StreamDelta{Stream: rs[i].Stream})
		}
		d := &out[j]
		if rs[i].Seq > d.HighestSeq {
			d.HighestSeq = rs[i].Seq
		}
		switch fates[i] {
		case FateNew:
			d.Added++
		case FateConflict:
			d.Conflicts++
		case FateCorrected:
			d.Corrected++
		}
	}
	return out
}
