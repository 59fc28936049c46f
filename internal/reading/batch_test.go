package reading

import (
	"slices"
	"testing"
)

func testBatch(seqs ...uint64) *Batch {
	b := &Batch{Stream: 0xabc, From: seqs[0], To: seqs[len(seqs)-1],
		Dropped: []Dropped{{Device: "pi-07", Stream: 0xabc, From: 1, To: 2}}}
	for _, s := range seqs {
		b.Readings = append(b.Readings, Reading{Device: "pi-07", Stream: 0xabc, Seq: s})
	}
	return b
}

// check says whether b is of stream 0xabc, covers from–to, holds seqs,
// and carries the dropped ranges when it should.
func check(t *testing.T, name string, b *Batch, from, to uint64, seqs []uint64, dropped bool) {
	t.Helper()
	var got []uint64
	for _, r := range b.Readings {
		got = append(got, r.Seq)
	}
	if b.Stream != 0xabc || b.From != from || b.To != to || !slices.Equal(got, seqs) || (len(b.Dropped) > 0) != dropped {
		t.Errorf("%s = stream %v %d–%d seqs %v dropped %v; want stream 0000000000000abc %d–%d seqs %v dropped %v",
			name, b.Stream, b.From, b.To, got, b.Dropped, from, to, seqs, dropped)
	}
}

func TestBatchHalves(t *testing.T) {
	b := testBatch(3, 4, 5, 7, 8)
	older, newer := b.Halves()
	check(t, "older", older, 3, 4, []uint64{3, 4}, true)
	check(t, "newer", newer, 5, 8, []uint64{5, 7, 8}, false)
	// The older half cannot grow into the newer one.
	older.Readings = append(older.Readings, Reading{Seq: 99})
	if newer.Readings[0].Seq != 5 {
		t.Errorf("appending to the older half overwrote the newer one: %v", newer.Readings[0].Seq)
	}
}

func TestBatchSplitOut(t *testing.T) {
	for _, tc := range []struct {
		i        int
		from, to uint64
		rest     []uint64
	}{
		{0, 4, 7, []uint64{4, 5, 7}},
		{1, 3, 7, []uint64{3, 5, 7}},
		{3, 3, 5, []uint64{3, 4, 5}},
	} {
		b := testBatch(3, 4, 5, 7)
		seq := b.Readings[tc.i].Seq
		one, rest := b.SplitOut(tc.i)
		check(t, "one", one, seq, seq, []uint64{seq}, false)
		check(t, "rest", rest, tc.from, tc.to, tc.rest, true)
		if got := []uint64{b.Readings[0].Seq, b.Readings[1].Seq, b.Readings[2].Seq, b.Readings[3].Seq}; !slices.Equal(got, []uint64{3, 4, 5, 7}) {
			t.Errorf("SplitOut(%d) changed the batch: %v", tc.i, got)
		}
	}
}
