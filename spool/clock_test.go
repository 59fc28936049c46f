package spool

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

var (
	bootA = BootID{0xa1, 15: 0x01}
	bootB = BootID{0xb2, 15: 0x02}
)

// unsyncedAt is a reading of value v taken unsynced at boot time bt in a
// boot whose wall clock read 1970 + bt (the Pi with no RTC and no
// fake-hwclock).
func unsyncedAt(v float64, bt time.Duration) reading.Reading {
	return reading.Reading{Sensor: "g.t", Unit: "C", Value: v, Time: time.Unix(0, int64(bt)).UTC(), Unsynced: true}
}

// readAll returns every reading Each yields, keyed by value.
func readAll(t *testing.T, s *Spool) map[float64]reading.Reading {
	t.Helper()
	out := map[float64]reading.Reading{}
	if err := s.Each(context.Background(), 0, func(r *reading.Reading) error {
		out[r.Value] = *r
		return nil
	}); err != nil {
		t.Fatalf("Each() error = %v", err)
	}
	return out
}

func appendClk(t *testing.T, s *Spool, r reading.Reading, bootTime time.Duration) uint64 {
	t.Helper()
	seq, err := s.Append(context.Background(), r, bootTime)
	if err != nil {
		t.Fatalf("Append(%v) error = %v", r.Value, err)
	}
	return seq
}

func TestBootOffsetCorrectsUnsyncedReadings(t *testing.T) {
	opts := testOptions(t.TempDir())
	ctx := context.Background()
	// Boot B ended before any sync; boot A is this one.
	opts.Boot = bootB
	s := mustOpen(t, opts)
	appendClk(t, s, unsyncedAt(1, 5*time.Second), 5*time.Second)
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	opts.Boot = bootA
	s = mustOpen(t, opts)
	appendClk(t, s, unsyncedAt(2, 10*time.Second), 10*time.Second)
	appendClk(t, s, unsyncedAt(3, 20*time.Second+1500), 20*time.Second+1500)
	synced := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	appendClk(t, s, reading.Reading{Sensor: "g.t", Unit: "C", Value: 4, Time: synced}, 40*time.Second)
	appendClk(t, s, unsyncedAt(5, 0), 0) // no boot clock: imported, say
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, s)
	if _, ok := s.BootOffset(bootA); ok {
		t.Fatal("BootOffset(A) known before SetBootOffset")
	}

	// The clock synchronised at boot time 30s, reading 2026-11-29 11:59:20:
	// offset = wall − boot time.
	offset := time.Duration(time.Date(2026, 11, 29, 11, 59, 20, 0, time.UTC).UnixNano()) - 30*time.Second
	if err := s.SetBootOffset(ctx, bootA, offset); err != nil {
		t.Fatalf("SetBootOffset() error = %v", err)
	}
	if got, ok := s.BootOffset(bootA); !ok || got != offset {
		t.Errorf("BootOffset(A) = %v, %v; want %v, true", got, ok, offset)
	}
	check := func(t *testing.T, got map[float64]reading.Reading) {
		t.Helper()
		want := map[float64]struct {
			time     time.Time
			unsynced bool
		}{
			1: {time.Unix(5, 0).UTC(), true}, // its boot never synced: flagged, as taken
			2: {time.Date(2026, 11, 29, 11, 59, 0, 0, time.UTC), false},
			3: {time.Date(2026, 11, 29, 11, 59, 10, 1500, time.UTC), false},
			4: {synced, false}, // taken synced: left as it was
			5: {time.Unix(0, 0).UTC(), true},
		}
		for v, w := range want {
			r := got[v]
			if !r.Time.Equal(w.time) || r.Unsynced != w.unsynced || r.Seq != before[v].Seq || r.Stream != before[v].Stream {
				t.Errorf("reading %v = %v unsynced %v seq %d; want %v unsynced %v seq %d",
					v, r.Time, r.Unsynced, r.Seq, w.time, w.unsynced, before[v].Seq)
			}
		}
	}
	got := readAll(t, s)
	check(t, got)
	t.Logf("taken unsynced at boot time 10s: stored as %s, read for sending as %s",
		before[2].Time.Format(time.RFC3339Nano), got[2].Time.Format(time.RFC3339Nano))

	// Next (the drain) sees the same; so does a dead letter.
	got = map[float64]reading.Reading{}
	for _, b := range drainAll(t, s) {
		for _, r := range b.Readings {
			got[r.Value] = r
		}
	}
	check(t, got)

	// The offset is in the file: a reopened spool corrects the same way.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, opts)
	if got, ok := s2.BootOffset(bootA); !ok || got != offset {
		t.Errorf("after reopen BootOffset(A) = %v, %v; want %v, true", got, ok, offset)
	}
	check(t, readAll(t, s2))

	// A later step (while synced) moves the offset: unsynced readings take
	// the latest one, synced ones keep their time.
	if err := s2.SetBootOffset(ctx, bootA, offset-time.Minute); err != nil {
		t.Fatal(err)
	}
	after := readAll(t, s2)
	if w := time.Date(2026, 11, 29, 11, 58, 0, 0, time.UTC); !after[2].Time.Equal(w) || !after[4].Time.Equal(synced) {
		t.Errorf("after a step: reading 2 at %v (want %v), reading 4 at %v (want %v)", after[2].Time, w, after[4].Time, synced)
	}
	b, err := s2.Next(10, 1<<20)
	if err != nil || b == nil {
		t.Fatalf("Next() = %v, %v", b, err)
	}
	if err := s2.DeadLetter(ctx, b, "test"); err != nil {
		t.Fatal(err)
	}
	dl, err := s2.DeadLetterBatch(b.Stream, b.From)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range dl.Readings {
		if r.Value == 2 && (r.Unsynced || !r.Time.Equal(after[2].Time)) {
			t.Errorf("dead-lettered reading 2 = %v unsynced %v; want %v corrected", r.Time, r.Unsynced, after[2].Time)
		}
	}
}

func TestBootOffsetOfANewBoot(t *testing.T) {
	// Synced before the first reading of the boot: the offset creates the
	// boot's record, and a reading taken unsynced later (the clock lost
	// sync) is read with it.
	opts := testOptions(t.TempDir())
	opts.Boot = bootA
	s := mustOpen(t, opts)
	ctx := context.Background()
	offset := 1_800_000_000 * time.Second
	if err := s.SetBootOffset(ctx, bootA, offset); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBootOffset(ctx, BootID{}, offset); err == nil {
		t.Error("SetBootOffset(zero boot id) = nil; want an error")
	}
	appendClk(t, s, unsyncedAt(1, time.Hour), time.Hour)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r := readAll(t, s)[1]
	if want := time.Unix(0, int64(offset+time.Hour)).UTC(); r.Unsynced || !r.Time.Equal(want) {
		t.Errorf("reading = %v unsynced %v; want %v synced", r.Time, r.Unsynced, want)
	}
}

func TestSalvageAppliesBootOffset(t *testing.T) {
	ctx := context.Background()
	oldOpts := testOptions(t.TempDir())
	oldOpts.Boot = bootA
	old, err := Open(oldOpts)
	if err != nil {
		t.Fatal(err)
	}
	appendClk(t, old, unsyncedAt(1, 10*time.Second), 10*time.Second)
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	oldOpts.Boot = bootB
	if old, err = Open(oldOpts); err != nil {
		t.Fatal(err)
	}
	appendClk(t, old, unsyncedAt(2, 10*time.Second), 10*time.Second)
	offset := 1_800_000_000 * time.Second
	if err := old.SetBootOffset(ctx, bootA, offset); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, Options{Path: filepath.Join(t.TempDir(), "spool.db"), Device: "pi-07", CommitInterval: 5 * time.Millisecond})
	if _, err := s.Salvage(ctx, oldOpts.Path); err != nil {
		t.Fatalf("Salvage() error = %v", err)
	}
	got := readAll(t, s)
	if want := time.Unix(0, int64(offset+10*time.Second)).UTC(); got[1].Unsynced || !got[1].Time.Equal(want) {
		t.Errorf("salvaged reading of boot A = %v unsynced %v; want %v synced", got[1].Time, got[1].Unsynced, want)
	}
	if !got[2].Unsynced || !got[2].Time.Equal(time.Unix(10, 0)) {
		t.Errorf("salvaged reading of boot B = %v unsynced %v; want 1970-01-01T00:00:10Z unsynced", got[2].Time, got[2].Unsynced)
	}
}
