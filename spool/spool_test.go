package spool

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func TestAppendDrainAck(t *testing.T) {
	opts := testOptions(t.TempDir())
	s := mustOpen(t, opts)
	seqs := appendN(t, s, 1, 250)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("Append #%d got seq %d; want %d", i+1, seq, i+1)
		}
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq != 250 || st.Readings != 250 || st.Buffered != 0 {
		t.Fatalf("Stats() = seq %d, readings %d, buffered %d; want 250, 250, 0", st.Seq, st.Readings, st.Buffered)
	}
	if want := sample(1).Time; !st.Oldest.Equal(want) {
		t.Errorf("Stats().Oldest = %v; want %v", st.Oldest, want)
	}
	var got []reading.Reading
	for {
		b, err := s.Next(100, 1<<20)
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		if b == nil {
			break
		}
		if len(b.Readings) > 100 || b.From != b.Readings[0].Seq || b.To != b.Readings[len(b.Readings)-1].Seq {
			t.Fatalf("batch %d–%d holds %d readings", b.From, b.To, len(b.Readings))
		}
		got = append(got, b.Readings...)
		if err := s.Ack(b); err != nil {
			t.Fatalf("Ack() error = %v", err)
		}
	}
	if len(got) != 250 {
		t.Fatalf("drained %d readings; want 250", len(got))
	}
	for i, r := range got {
		want := sample(i + 1)
		want.Device, want.Stream, want.Seq = "pi-07", st.Stream, uint64(i+1)
		if err := r.Validate(); err != nil {
			t.Fatalf("reading %d: %v", i+1, err)
		}
		if r.Device != want.Device || r.Stream != want.Stream || r.Seq != want.Seq || r.Sensor != want.Sensor ||
			r.Value != want.Value || r.Unit != want.Unit || !r.Time.Equal(want.Time) || r.Unsynced {
			t.Fatalf("reading %d = %+v; want %+v", i+1, r, want)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(); st.Readings != 0 || st.Bytes != 0 || st.Seq != 250 {
		t.Errorf("after acking all: readings %d, bytes %d, seq %d; want 0, 0, 250", st.Readings, st.Bytes, st.Seq)
	}
}

func TestSeqContinuesAcrossRestart(t *testing.T) {
	opts := testOptions(t.TempDir())
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 1, 5)
	st1, _ := s.Stats()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	seqs := appendN(t, s, 6, 5)
	if !slices.Equal(seqs, []uint64{6, 7, 8, 9, 10}) {
		t.Errorf("seqs after restart = %v; want 6–10", seqs)
	}
	st2, _ := s.Stats()
	if st1.Stream != st2.Stream || st2.Stream == 0 {
		t.Errorf("stream changed across restart: %v → %v", st1.Stream, st2.Stream)
	}
	if got := seqsOf(drainAll(t, s)); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("drained seqs %v; want 1–10", got)
	}
}

func TestUnackedComeBackAfterRestartAckedDoNot(t *testing.T) {
	opts := testOptions(t.TempDir())
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 1, 30)
	b1, _ := s.Next(10, 1<<20)
	b2, _ := s.Next(10, 1<<20)
	b3, _ := s.Next(10, 1<<20)
	if b1 == nil || b2 == nil || b3 == nil || b1.From != 1 || b2.From != 11 || b3.From != 21 {
		t.Fatalf("batches do not cover 1–30 in order: %v %v %v", b1, b2, b3)
	}
	if b, _ := s.Next(10, 1<<20); b != nil {
		t.Fatalf("Next() handed out %d–%d twice", b.From, b.To)
	}
	// Out of order: the newest first, the middle one never.
	if err := s.Ack(b3); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(b1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	if got, want := seqsOf(drainAll(t, s)), []uint64{11, 12, 13, 14, 15, 16, 17, 18, 19, 20}; !slices.Equal(got, want) {
		t.Errorf("after restart drained %v; want %v", got, want)
	}
}

func TestCommitIntervalZeroCommitsBeforeReturning(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.CommitInterval = 0
	s := mustOpen(t, opts)
	for i := 1; i <= 3; i++ {
		seq, err := s.Append(context.Background(), sample(i), 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := s.Stats(); st.Seq != seq || st.Buffered != 0 {
			t.Fatalf("after Append → %d: committed seq %d, buffered %d", seq, st.Seq, st.Buffered)
		}
	}
}

func TestGroupCommitWaitsForIntervalOrCount(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.CommitInterval = time.Hour
	opts.CommitReadings = 10
	s := mustOpen(t, opts)
	ctx := context.Background()
	for i := 1; i <= 9; i++ {
		if _, err := s.Append(ctx, sample(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if st, _ := s.Stats(); st.Seq != 0 || st.Buffered != 9 {
		t.Fatalf("9 appends with a 1h interval: committed %d, buffered %d; want 0, 9", st.Seq, st.Buffered)
	}
	if b, _ := s.Next(100, 1<<20); b != nil {
		t.Fatalf("Next() returned uncommitted readings %d–%d", b.From, b.To)
	}
	seq, err := s.Append(ctx, sample(10), 0)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.WaitCommitted(wctx, seq); err != nil {
		t.Fatalf("WaitCommitted(%d) after the 10th append: %v", seq, err)
	}
}

func TestBackpressureBlocksAppend(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.CommitInterval = time.Hour
	opts.CommitReadings = 1000
	opts.MaxBufferedReadings = 5
	s := mustOpen(t, opts)
	// CommitReadings is lowered to the buffer size, so the 5th append
	// triggers the commit; the 6th waits for it.
	for i := 1; i <= 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.Append(ctx, sample(i), 0)
		cancel()
		if err != nil {
			t.Fatalf("Append(%d) error = %v", i, err)
		}
		if st, _ := s.Stats(); st.Buffered > 5 {
			t.Fatalf("buffer holds %d readings; cap 5", st.Buffered)
		}
	}
}

func TestAppendRejectsInvalid(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	r := sample(1)
	r.Sensor = ""
	if _, err := s.Append(context.Background(), r, 0); !errors.Is(err, reading.ErrInvalid) {
		t.Errorf("Append(no sensor) error = %v; want reading.ErrInvalid", err)
	}
}

func TestLabelsUnsyncedAndBootClockRoundTrip(t *testing.T) {
	boot, err := ParseBootID("0f3e4a52-9b1c-4d2e-8f00-123456789abc")
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t.TempDir())
	opts.Boot = boot
	s := mustOpen(t, opts)
	r := sample(1)
	r.Labels = map[string]string{"site": "north", "row": "3"}
	r.Unsynced = true
	r.Time = time.Unix(12, 345678901).UTC()
	r.Value = 1.0 / 3
	if _, err := s.Append(context.Background(), r, 42*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := s.Next(10, 1<<20)
	if err != nil || b == nil {
		t.Fatalf("Next() = %v, %v", b, err)
	}
	got := b.Readings[0]
	if !got.Unsynced || got.Value != r.Value || !got.Time.Equal(r.Time) || got.Labels["site"] != "north" || got.Labels["row"] != "3" || len(got.Labels) != 2 {
		t.Errorf("round trip = %+v; want %+v", got, r)
	}
}

func TestLockTimeoutNamesHolder(t *testing.T) {
	opts := testOptions(t.TempDir())
	mustOpen(t, opts)
	opts.LockTimeout = 50 * time.Millisecond
	_, err := Open(opts)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open() error = %v; want ErrLocked", err)
	}
	if want := "held by this process"; !strings.Contains(err.Error(), want) {
		t.Errorf("second Open() error = %q; want it to say %q", err, want)
	}
}

// TestAtRestTarget holds the target: at most 64 bytes of file per
// stored reading (the sim workload of the benchmarks).
func TestAtRestTarget(t *testing.T) {
	n := 50_000
	if emulated {
		n = 20_000
	}
	opts := testOptions(t.TempDir())
	opts.CommitInterval = time.Hour
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		r, c := benchReading(i)
		if _, err := s.Append(ctx, r, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := fileStats(t, opts)
	if st.Readings != uint64(n) {
		t.Fatalf("stored %d readings; want %d", st.Readings, n)
	}
	// bbolt grows a small file to its power-of-two mmap size, so the pages
	// in use say what a reading costs (BenchmarkAtRest reports file sizes).
	pages := float64(pagesInUse(t, opts.Path)) / float64(n)
	logical := float64(st.Bytes) / float64(n)
	t.Logf("at rest: %.1f bytes of pages in use, %.1f logical bytes per reading (file %.1f)", pages, logical, float64(st.FileSize)/float64(n))
	if pages > 64 || logical > 64 {
		t.Errorf("at rest: %.1f page bytes, %.1f logical bytes per reading; want ≤ 64", pages, logical)
	}
}

// A fast drain commits its deletes early instead of holding a whole
// interval's worth in one transaction's heap.
func TestAcksCommitEarlyOnceManyWait(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.CommitInterval = time.Hour
	s := mustOpen(t, opts)
	ctx := context.Background()
	n := ackCommitReadings + ackCommitReadings/2
	seqs := appendN(t, s, 1, n)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WaitCommitted(wctx, seqs[len(seqs)-1]); err != nil {
		t.Fatal(err)
	}
	ack := func(count int) {
		t.Helper()
		for acked := 0; acked < count; {
			b, err := s.Next(min(500, count-acked), 1<<20)
			if err != nil || b == nil {
				t.Fatalf("Next() = %v, %v after %d acks", b, err, acked)
			}
			if err := s.Ack(b); err != nil {
				t.Fatal(err)
			}
			acked += len(b.Readings)
		}
	}
	readingsAfter := func() uint64 {
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.Readings
	}
	ack(ackCommitReadings - 500)
	time.Sleep(50 * time.Millisecond)
	if got := readingsAfter(); got != uint64(n) {
		t.Fatalf("%d acks below the threshold were committed before the 1h interval: %d readings left, want %d", ackCommitReadings-500, got, n)
	}
	ack(500)
	deadline := time.Now().Add(10 * time.Second)
	for readingsAfter() != uint64(n-ackCommitReadings) {
		if time.Now().After(deadline) {
			t.Fatalf("%d acks waited for the 1h interval: %d readings left, want %d", ackCommitReadings, readingsAfter(), n-ackCommitReadings)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Acknowledgements that outrun the writer wait for it once
// ackWaitReadings wait, so one commit's deletes (and their heap) stay
// bounded however long the backlog; they go on when the writer catches up.
func TestAckWaitsWhenTheWriterFallsBehind(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.CommitInterval = time.Hour
	s := mustOpen(t, opts)
	n := 3 * ackWaitReadings
	appendN(t, s, 1, n)
	var hold atomic.Bool
	gate := make(chan struct{})
	s.commitHook = func() { // no commit runs here before this point
		if hold.Load() {
			<-gate
		}
	}
	hold.Store(true)
	var acked atomic.Int64
	done := make(chan error, 1)
	go func() {
		for acked.Load() < int64(n) {
			b, err := s.Next(500, 1<<20)
			if err == nil && b == nil {
				err = errors.New("Next() = nil before the backlog drained")
			}
			if err != nil {
				done <- err
				return
			}
			if err := s.Ack(b); err != nil {
				done <- err
				return
			}
			acked.Add(int64(len(b.Readings)))
		}
		done <- nil
	}()
	// The first early commit blocks in the hook; the acks behind it pile
	// up to the bound and then wait. Wait until they stop moving.
	last, still := int64(-1), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Since(still) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("acks still moving after 30s (%d of %d) while the writer is held", acked.Load(), n)
		}
		if a := acked.Load(); a != last {
			last, still = a, time.Now()
		}
	}
	s.mu.Lock()
	waiting := s.ackWaiting
	s.mu.Unlock()
	if last >= int64(n) || waiting > ackWaitReadings+500 {
		t.Errorf("with the writer held, %d of %d readings were acknowledged and %d wait for a commit; want Ack to wait from %d waiting",
			last, n, waiting, ackWaitReadings)
	}
	hold.Store(false)
	close(gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("acks stuck at %d of %d after the writer was released", acked.Load(), n)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stats(); err != nil || st.Readings != 0 {
		t.Fatalf("after acknowledging all, Stats() = %d readings, %v; want 0", st.Readings, err)
	}
}
