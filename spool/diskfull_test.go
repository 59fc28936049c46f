package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a small tmpfs for the test, or skips the test when the
// mount fails (not root, no mount namespace rights).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root): %v", size, err)
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

// TestDiskFull fills the spool's file system: commits fail without killing
// anything, readings wait in the bounded buffer, the policy drops the
// oldest buffered ones with seq accounting, and writing resumes when space
// returns.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	opts := testOptions(dir)
	opts.CommitInterval = 10 * time.Millisecond
	opts.MaxBufferedReadings = 100
	s := mustOpen(t, opts)
	appendN(t, s, 1, 10)
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 2000
	for i := 11; i <= n; i++ {
		if _, err := s.Append(ctx, sample(i), Clock{}); err != nil {
			t.Fatalf("Append(%d) on a full disk: %v", i, err)
		}
	}
	st, _ := s.Stats()
	if !st.Failing || !strings.Contains(st.LastError, "no space left") || st.Buffered > 100 {
		t.Fatalf("on a full disk: failing %v, last error %q, buffered %d (cap 100)", st.Failing, st.LastError, st.Buffered)
	}
	if err := s.Flush(ctx); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("Flush() on a full disk error = %v; want ErrNotCommitted", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "commits to work again", func() bool { st, _ := s.Stats(); return !st.Failing && st.Buffered == 0 })
	st, _ = s.Stats()
	if st.Seq != n || st.Dropped == 0 || st.Dropped+st.Readings != n {
		t.Fatalf("after space returned: seq %d, dropped %d, stored %d; want seq %d, dropped+stored = %d", st.Seq, st.Dropped, st.Readings, n, n)
	}
	// Every seq is either stored or inside a reported dropped range.
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
	last := uint64(10)
	for i := 11; i < 1000 && err == nil; i++ {
		var seq uint64
		if seq, err = s.Append(ctx, sample(i), Clock{}); err == nil {
			last = seq
		}
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append() on a full disk with reject_new: %v; want ErrFull", err)
	}
	if st, _ := s.Stats(); st.Dropped != 0 || st.Buffered > 50 {
		t.Errorf("reject_new dropped %d, buffered %d", st.Dropped, st.Buffered)
	}
	os.Remove(filepath.Join(dir, "filler"))
	waitFor(t, "commits to work again", func() bool { st, _ := s.Stats(); return !st.Failing && st.Buffered == 0 })
	if seq, err := s.Append(ctx, sample(0), Clock{}); err != nil || seq != last+1 {
		t.Errorf("Append() after space returned = %d, %v; want %d", seq, err, last+1)
	}
}
