package spool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func TestCapDropOldestAccountsRanges(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.MaxBytes = 100 * 40
	s := mustOpen(t, opts)
	for i := 1; i <= 1000; i += 100 {
		appendN(t, s, i, 100)
	}
	st, _ := s.Stats()
	if st.Bytes > uint64(opts.MaxBytes) || st.Readings == 0 {
		t.Fatalf("after 1000 appends: %d bytes, %d readings; cap %d", st.Bytes, st.Readings, opts.MaxBytes)
	}
	if st.Dropped+st.Readings != 1000 {
		t.Fatalf("dropped %d + stored %d != 1000 appended", st.Dropped, st.Readings)
	}
	want := reading.Dropped{Device: "pi-07", Stream: st.Stream, From: 1, To: st.Dropped}
	if pd, err := s.PendingDropped(); err != nil || len(pd) != 1 || pd[0] != want {
		t.Fatalf("PendingDropped() = %+v, %v; want [%+v]", pd, err, want)
	}
	b, err := s.Next(1000, 1<<20)
	if err != nil || b == nil {
		t.Fatalf("Next() = %v, %v", b, err)
	}
	if len(b.Dropped) != 1 || b.Dropped[0] != want {
		t.Fatalf("Next().Dropped = %+v; want [%+v]", b.Dropped, want)
	}
	if err := b.Dropped[0].Validate(); err != nil {
		t.Fatal(err)
	}
	if b.From != st.Dropped+1 || b.To != 1000 || uint64(len(b.Readings)) != st.Readings {
		t.Fatalf("Next() = %d–%d (%d readings); want %d–1000", b.From, b.To, len(b.Readings), st.Dropped+1)
	}
	// Not acknowledged: the range comes again after a restart.
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	b, _ = s.Next(10, 1<<20)
	if b == nil || len(b.Dropped) != 1 || b.Dropped[0] != want {
		t.Fatalf("after restart Next().Dropped = %+v; want [%+v]", b, want)
	}
	if b2, _ := s.Next(10, 1<<20); b2 == nil || len(b2.Dropped) != 0 {
		t.Fatalf("second batch repeats the dropped range: %+v", b2)
	}
	if err := s.Ack(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	if b, _ := s.Next(10, 1<<20); b == nil || len(b.Dropped) != 0 || b.From != want.To+11 {
		t.Fatalf("after the ack Next() = %+v; want no dropped range, readings from %d", b, want.To+11)
	}
}

func TestCapRejectNew(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.MaxBytes = 50 * 40
	opts.Policy = RejectNew
	s := mustOpen(t, opts)
	ctx := context.Background()
	var last uint64
	rejected := 0
	for i := 1; i <= 200; i++ {
		seq, err := s.Append(ctx, sample(i), 0)
		if errors.Is(err, ErrFull) {
			rejected++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if seq != last+1 {
			t.Fatalf("seq %d after %d: a rejected reading took a seq", seq, last)
		}
		last = seq
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := s.Stats()
	if rejected == 0 || st.Dropped != 0 || st.Readings != last {
		t.Fatalf("rejected %d, dropped %d, stored %d, last seq %d", rejected, st.Dropped, st.Readings, last)
	}
	b, _ := s.Next(1000, 1<<20)
	if err := s.Ack(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if seq, err := s.Append(ctx, sample(1), 0); err != nil || seq != last+1 {
		t.Fatalf("after draining Append() = %d, %v; want %d", seq, err, last+1)
	}
}

func TestMaxAgeDropsOldSyncedReadings(t *testing.T) {
	var now atomic.Int64
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now.Store(base.UnixNano())
	opts := testOptions(t.TempDir())
	opts.MaxAge = time.Hour
	opts.CommitInterval = time.Hour
	opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	s := mustOpen(t, opts)
	ctx := context.Background()
	add := func(age time.Duration, unsynced bool) {
		r := sample(1)
		r.Time, r.Unsynced = base.Add(-age), unsynced
		if _, err := s.Append(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		add(2*time.Hour, false) // seqs 1–5: too old
	}
	add(3*time.Hour, true) // seq 6: unsynced, its age unknown
	add(2*time.Hour, false)
	add(time.Minute, false)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats()
	if st.Dropped != 5 || st.Readings != 3 {
		t.Fatalf("dropped %d, stored %d; want 5, 3", st.Dropped, st.Readings)
	}
	b, _ := s.Next(100, 1<<20)
	if b == nil || b.From != 6 || len(b.Dropped) != 1 || b.Dropped[0].From != 1 || b.Dropped[0].To != 5 {
		t.Fatalf("Next() = %+v; want readings from 6 and dropped 1–5", b)
	}
}

func TestAgeCapWritesNothingWhileNothingAgedOut(t *testing.T) {
	var now atomic.Int64
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now.Store(base.UnixNano())
	opts := testOptions(t.TempDir())
	opts.MaxAge = time.Hour
	opts.CommitInterval = 5 * time.Millisecond
	opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	s := mustOpen(t, opts)
	r := sample(1)
	r.Time = base
	if _, err := s.Append(context.Background(), r, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st0, _ := s.Stats()
	now.Store(base.Add(10 * time.Minute).UnixNano()) // an age check is due, nothing is old
	time.Sleep(100 * time.Millisecond)
	if st, _ := s.Stats(); st.Commits != st0.Commits {
		t.Fatalf("idle spool committed %d times for an age check that found nothing", st.Commits-st0.Commits)
	}
	now.Store(base.Add(2 * time.Hour).UnixNano())
	waitFor(t, "the age cap", func() bool { st, _ := s.Stats(); return st.Dropped == 1 })
}
