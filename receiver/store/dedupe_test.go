package store_test

import (
	"slices"
	"testing"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// The conformance suite's readings: mk(device, stream, from, to).
var (
	mk         = storetest.Readings
	testStream = storetest.Stream
)

// TestDedupeFastPath checks that Dedupe gives the same first occurrences
// and fates whether or not a batch takes the path without a map (each
// stream's seqs rising, at most four streams).
func TestDedupeFastPath(t *testing.T) {
	cat := func(parts ...[]reading.Reading) []reading.Reading { return slices.Concat(parts...) }
	other := reading.StreamID(7)
	changed := mk("pi-07", testStream, 3, 3)
	changed[0].Value++
	cases := []struct {
		name string
		rs   []reading.Reading
		fast bool
	}{
		{"one run", mk("pi-07", testStream, 1, 50), true},
		{"two streams interleaved", cat(mk("pi-07", testStream, 1, 5), mk("pi-07", other, 1, 5), mk("pi-07", testStream, 6, 9)), true},
		{"five streams", cat(mk("pi-07", 1, 1, 2), mk("pi-07", 2, 1, 2), mk("pi-07", 3, 1, 2), mk("pi-07", 4, 1, 2), mk("pi-07", 5, 1, 2)), false},
		{"a key twice", cat(mk("pi-07", testStream, 1, 5), mk("pi-07", testStream, 3, 3)), false},
		{"a key twice, changed", cat(mk("pi-07", testStream, 1, 5), changed), false},
		{"falling seqs", cat(mk("pi-07", testStream, 6, 9), mk("pi-07", testStream, 1, 5)), false},
	}
	for _, c := range cases {
		if got := store.Increasing(c.rs); got != c.fast {
			t.Errorf("%s: increasing() = %v; want %v", c.name, got, c.fast)
		}
		first, fates := store.Dedupe(c.rs)
		// Reference: the first occurrence of each key by a map.
		seen := map[store.Key]int{}
		var wantFirst []int
		wantFates := make([]store.Fate, len(c.rs))
		for i, r := range c.rs {
			k := store.Key{Stream: r.Stream, Seq: r.Seq}
			if j, ok := seen[k]; ok {
				wantFates[i] = store.Classify(&c.rs[j], &c.rs[i])
				if wantFates[i] == store.FateCorrected {
					wantFates[i] = store.FateConflict
				}
				continue
			}
			seen[k] = i
			wantFirst = append(wantFirst, i)
		}
		if !slices.Equal(first, wantFirst) || !slices.Equal(fates, wantFates) {
			t.Errorf("%s: dedupe() = %v, %v; want %v, %v", c.name, first, fates, wantFirst, wantFates)
		}
	}
}
