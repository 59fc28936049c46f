package spool

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func appendSeq(t *testing.T, s *Spool, n int) {
	t.Helper()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := range n {
		if _, err := s.Append(context.Background(), reading.Reading{Sensor: "s", Value: float64(i), Time: t0.Add(time.Duration(i) * time.Millisecond)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestNextFresh: while a backlog drains oldest first, NextFresh hands out
// the newest readings, and between them Next and NextFresh hand out every
// reading exactly once.
func TestNextFresh(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	appendSeq(t, s, 1000)
	handed := map[uint64]int{}
	take := func(b *reading.Batch, err error) *reading.Batch {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if b != nil {
			for _, r := range b.Readings {
				handed[r.Seq]++
			}
		}
		return b
	}
	if b := take(s.Next(100, 1<<20)); b == nil || b.From != 1 || b.To != 100 {
		t.Fatalf("Next = %+v; want 1..100", b)
	}
	// 900 wait beyond the cursor: the newest 50 go out now.
	if b := take(s.NextFresh(50, 1<<20, 200)); b == nil || b.From != 951 || b.To != 1000 {
		t.Fatalf("NextFresh = %+v; want 951..1000", b)
	}
	if b := take(s.NextFresh(50, 1<<20, 200)); b != nil {
		t.Fatalf("NextFresh with nothing new = %d..%d; want nil", b.From, b.To)
	}
	appendSeq(t, s, 10)
	if b := take(s.NextFresh(50, 1<<20, 200)); b == nil || b.From != 1001 || b.To != 1010 {
		t.Fatalf("NextFresh after 10 more = %+v; want 1001..1010", b)
	}
	// The oldest lane runs up to the fresh range, then past it.
	for {
		b := take(s.Next(100, 1<<20))
		if b == nil {
			break
		}
		if b.From <= 1010 && b.To >= 951 {
			t.Fatalf("Next handed %d..%d, inside what NextFresh handed", b.From, b.To)
		}
	}
	appendSeq(t, s, 5)
	if b := take(s.Next(100, 1<<20)); b == nil || b.From != 1011 || b.To != 1015 {
		t.Fatalf("Next after the lanes met = %+v; want 1011..1015", b)
	}
	for seq := uint64(1); seq <= 1015; seq++ {
		if handed[seq] != 1 {
			t.Fatalf("seq %d handed out %d times; want once", seq, handed[seq])
		}
	}
	// A small backlog needs no fresh lane.
	appendSeq(t, s, 20)
	if b := take(s.NextFresh(50, 1<<20, 200)); b != nil {
		t.Errorf("NextFresh with 20 waiting = %d..%d; want nil below minBacklog", b.From, b.To)
	}
}
