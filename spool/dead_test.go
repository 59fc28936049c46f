package spool

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/outpost-iot/outpost/internal/reading"
)

func TestDeadLetterListResendPurge(t *testing.T) {
	opts := testOptions(t.TempDir())
	s := mustOpen(t, opts)
	ctx := context.Background()
	appendN(t, s, 1, 30)
	b1, _ := s.Next(10, 1<<20)
	if err := s.DeadLetter(ctx, b1, "400: line 3: field \"value\": invalid"); err != nil {
		t.Fatalf("DeadLetter() error = %v", err)
	}
	b2, _ := s.Next(10, 1<<20)
	if b2 == nil || b2.From != 11 {
		t.Fatalf("draining stalled after a dead letter: %+v", b2)
	}
	dl, err := s.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].From != 1 || dl[0].To != 10 || dl[0].Count != 10 || dl[0].Reason == "" || dl[0].Time.IsZero() {
		t.Fatalf("DeadLetters() = %+v; want one record 1–10 with reason and time", dl)
	}
	st, _ := s.Stats()
	if st.DeadLettered != 10 || st.Readings != 20 {
		t.Fatalf("dead-lettered %d, stored %d; want 10, 20", st.DeadLettered, st.Readings)
	}
	peek, err := s.DeadLetterBatch(st.Stream, 1)
	if err != nil || len(peek.Readings) != 10 || peek.Readings[9].Value != 10 {
		t.Fatalf("DeadLetterBatch() = %+v, %v", peek, err)
	}

	if err := s.Resend(ctx, st.Stream, 1); err != nil {
		t.Fatalf("Resend() error = %v", err)
	}
	got := seqsOf(drainAll(t, s))
	if want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}; !slices.Equal(got, want) {
		t.Fatalf("after Resend drained %v; want %v", got, want)
	}
	if dl, _ := s.DeadLetters(); len(dl) != 0 {
		t.Fatalf("DeadLetters() after Resend = %+v; want none", dl)
	}

	if err := s.DeadLetter(ctx, &reading.Batch{Stream: st.Stream, From: 3, To: 3}, "400: line 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, st.Stream, 3); err != nil {
		t.Fatalf("Purge() error = %v", err)
	}
	if err := s.Purge(ctx, st.Stream, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Purge() error = %v; want ErrNotFound", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	b, _ := s.Next(100, 1<<20)
	if b == nil || len(b.Dropped) != 1 || b.Dropped[0].From != 3 || b.Dropped[0].To != 3 {
		t.Fatalf("after Purge Next() = %+v; want the purged range 3–3 reported", b)
	}
	if slices.Contains(seqsOf([]*reading.Batch{b}), 3) {
		t.Fatalf("purged seq 3 still drained")
	}
	if st, _ := s.Stats(); st.Purged != 1 || st.DeadLettered != 11 {
		t.Fatalf("purged %d, dead-lettered %d; want 1, 11", st.Purged, st.DeadLettered)
	}
}
