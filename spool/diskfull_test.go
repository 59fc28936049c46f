package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a small tmpfs for the test. When the mount fails (not
// root, no mount namespace rights) it skips the test, or fails it with
// OUTPOST_REQUIRE_SERVICES=1, as in CI, which runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		cannotRun(t, fmt.Sprintf("cannot mount a %s tmpfs to fill (needs root): %v", size, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// diskFullCase fills the spool's file system and keeps appending on it.
// With drop_oldest every commit must succeed: the oldest committed
// readings are dropped (and reported) to make room in the file, which
// cannot grow. When space returns, the spool leaves the out-of-space state
// and stops dropping.
func diskFullCase(t *testing.T, opts Options) {
	dir := mountTmpfs(t, "1m")
	opts.Path = filepath.Join(dir, "spool.db")
	opts.CommitInterval = 10 * time.Millisecond
	opts.MaxBufferedReadings = 500
	s := mustOpen(t, opts)
	appendN(t, s, 1, 100)
	if !opts.noFallocate {
		waitFor(t, "headroom to be preallocated", func() bool {
			fi, err := os.Stat(opts.Path)
			return err == nil && fi.Size() >= 2*reserveBytes
		})
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	// 20,000 readings (about 1.2 MB of pages; 5,000 under emulation)
	// cannot fit beside the filler: every one is committed, the oldest
	// are dropped.
	n := 20000
	if emulated {
		n = 5000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 101; i <= n; i += 100 {
		for j := i; j < i+100; j++ {
			if _, err := s.Append(ctx, sample(j), 0); err != nil {
				t.Fatalf("Append(%d) on a full disk: %v", j, err)
			}
		}
		if err := s.Flush(ctx); err != nil {
			st, _ := s.Stats()
			t.Fatalf("Flush() after reading %d on a full disk error = %v; want every commit to succeed (stats %+v)", i+99, err, st)
		}
	}
	st, _ := s.Stats()
	if !st.OutOfSpace || st.Failing || st.Buffered != 0 || st.Seq != uint64(n) || st.Dropped == 0 || st.Dropped+st.Readings != uint64(n) {
		t.Fatalf("on a full disk: %+v; want out of space, not failing, nothing buffered, seq %d, dropped > 0, dropped+stored = %d", st, n, n)
	}
	t.Logf("full disk: %d committed, %d dropped to make room, %d stored, file %d bytes", n, st.Dropped, st.Readings, st.FileSize)
	checkAccounted(t, s, uint64(n))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the spool to see space again", func() bool { st, _ := s.Stats(); return !st.OutOfSpace })
	dropped := st.Dropped
	appendN(t, s, n+1, 500)
	if st, _ = s.Stats(); st.Dropped != dropped || st.Seq != uint64(n)+500 {
		t.Errorf("after space returned: dropped %d (was %d), seq %d; want no more drops and seq %d", st.Dropped, dropped, st.Seq, n+500)
	}
}

// checkAccounted reads the whole spool: every seq 1..n is stored once,
// with its own value, or inside a reported dropped range.
func checkAccounted(t *testing.T, s *Spool, n uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	for _, b := range drainAll(t, s) {
		for _, d := range b.Dropped {
			for q := d.From; q <= d.To; q++ {
				seen[q] = true
			}
		}
		for _, r := range b.Readings {
			if seen[r.Seq] || r.Value != float64(r.Seq) {
				t.Fatalf("seq %d: reported twice or wrong value %v", r.Seq, r.Value)
			}
			seen[r.Seq] = true
		}
	}
	for q := uint64(1); q <= n; q++ {
		if !seen[q] {
			t.Fatalf("seq %d neither stored nor reported dropped", q)
		}
	}
}

// TestDiskFull: the spool keeps headroom preallocated, sees the disk fill
// when it cannot preallocate more, and makes room before it needs it.
func TestDiskFull(t *testing.T) {
	diskFullCase(t, testOptions(""))
}

// TestDiskFullNoFallocate: on a file system that cannot preallocate, the
// first sign of a full disk is a commit failing with ENOSPC; the spool
// drops the oldest readings in a small transaction that reuses the pages
// earlier commits freed, commits again at once, and from then on makes
// room before each commit.
func TestDiskFullNoFallocate(t *testing.T) {
	opts := testOptions("")
	opts.noFallocate = true
	diskFullCase(t, opts)
}

// TestDiskFullBufferSheds: a full disk from the start, with nothing
// committed to drop and no headroom: commits fail, readings wait in the
// bounded buffer, which sheds its oldest with their seqs reported as
// dropped. When space returns everything left is committed.
func TestDiskFullBufferSheds(t *testing.T) {
	dir := mountTmpfs(t, "256k")
	opts := testOptions(dir)
	opts.CommitInterval = 10 * time.Millisecond
	opts.MaxBufferedReadings = 100
	opts.noFallocate = true
	s := mustOpen(t, opts)
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 5000
	for i := 1; i <= n; i++ {
		if _, err := s.Append(ctx, sample(i), 0); err != nil {
			t.Fatalf("Append(%d) on a full disk: %v", i, err)
		}
		if st, _ := s.Stats(); st.Buffered > 100 {
			t.Fatalf("buffered %d readings; want at most 100", st.Buffered)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "commits to work again", func() bool { st, _ := s.Stats(); return !st.Failing && st.Buffered == 0 })
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats()
	if st.Seq != n || st.Dropped == 0 || st.Dropped+st.Readings != n {
		t.Fatalf("after space returned: seq %d, dropped %d, stored %d; want seq %d, dropped > 0, dropped+stored = %d", st.Seq, st.Dropped, st.Readings, n, n)
	}
	checkAccounted(t, s, n)
}

// TestDiskFullRejectNew: with reject_new, a full disk refuses new readings
// (counted); nothing is dropped, and what was accepted is committed once
// space returns, with seqs contiguous.
func TestDiskFullRejectNew(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	opts := testOptions(dir)
	opts.CommitInterval = 10 * time.Millisecond
	opts.MaxBufferedReadings = 50
	opts.Policy = RejectNew
	s := mustOpen(t, opts)
	appendN(t, s, 1, 10)
	fill(t, filepath.Join(dir, "filler"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	last, refused := uint64(10), 0
	for i := 11; i < 100000 && refused < 100; i++ {
		var seq uint64
		if seq, err = s.Append(ctx, sample(i), 0); err == nil {
			last = seq
			continue
		}
		if !errors.Is(err, ErrFull) {
			t.Fatalf("Append() on a full disk with reject_new: %v; want ErrFull", err)
		}
		refused++
	}
	st, _ := s.Stats()
	if refused == 0 || st.Rejected < uint64(refused) || st.Dropped != 0 || st.Buffered > 50 {
		t.Errorf("reject_new on a full disk: refused %d, stats rejected %d, dropped %d, buffered %d", refused, st.Rejected, st.Dropped, st.Buffered)
	}
	os.Remove(filepath.Join(dir, "filler"))
	waitFor(t, "commits to work again", func() bool {
		st, _ := s.Stats()
		return !st.Failing && st.Buffered == 0 && !st.OutOfSpace
	})
	if seq, err := s.Append(ctx, sample(int(last+1)), 0); err != nil || seq != last+1 {
		t.Errorf("Append() after space returned = %d, %v; want %d", seq, err, last+1)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(drainAll(t, s)); len(got) != int(last+1) || got[len(got)-1] != last+1 {
		t.Errorf("stored %d readings up to %v; want 1..%d, every accepted reading", len(got), got[len(got)-1:], last+1)
	}
}
