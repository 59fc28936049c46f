package spool

import (
	"context"
	"errors"
	"testing"

	"github.com/outpost-iot/outpost/internal/reading"
)

func TestEachReadsWithoutHandingOut(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	appendSeq(t, s, 2500) // three chunks
	var seqs []uint64
	if err := s.Each(context.Background(), 0, func(r *reading.Reading) error {
		seqs = append(seqs, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 2500 || seqs[0] != 1 || seqs[2499] != 2500 {
		t.Fatalf("Each saw %d readings (%v…); want 1..2500", len(seqs), seqs[:min(3, len(seqs))])
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("Each out of order at %d: %d after %d", i, seqs[i], seqs[i-1])
		}
	}
	n := 0
	s.Each(context.Background(), 10, func(*reading.Reading) error { n++; return nil })
	if n != 10 {
		t.Errorf("Each with limit 10 called fn %d times", n)
	}
	stop := errors.New("stop")
	if err := s.Each(context.Background(), 0, func(*reading.Reading) error { return stop }); err != stop {
		t.Errorf("Each = %v; want fn's error", err)
	}
	// Nothing was handed out: the drain still starts at seq 1.
	if b, err := s.Next(5, 1<<20); err != nil || b == nil || b.From != 1 {
		t.Errorf("Next after Each = %+v, %v; want a batch from seq 1", b, err)
	}
	if d, err := s.PendingDropped(); err != nil || len(d) != 0 {
		t.Errorf("PendingDropped = %v, %v; want none", d, err)
	}
}
