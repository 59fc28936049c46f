package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

// emulated says whether the tests run under qemu-user (or on a slow ARM
// board), where they use smaller counts.
var emulated = runtime.GOARCH != "amd64"

// requireEnv=1 (as in CI, which runs as root) turns a test that cannot run
// here, for want of root or a mount, into a failure instead of a skip.
const requireEnv = "OUTPOST_REQUIRE_SERVICES"

// cannotRun skips the test, saying why, or fails it when requireEnv=1.
func cannotRun(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv(requireEnv) == "1" {
		tb.Fatalf("%s (%s=1 makes this a failure)", why, requireEnv)
	}
	tb.Skipf("%s (set %s=1 to fail instead of skip)", why, requireEnv)
}

// testOptions returns options for a spool file in dir.
func testOptions(dir string) Options {
	return Options{
		Path:           filepath.Join(dir, "spool.db"),
		Device:         "pi-07",
		CommitInterval: 5 * time.Millisecond,
	}
}

// mustOpen opens a spool and closes it when the test ends, after checking
// that the meta counters agree with the file (the invariant every test
// keeps).
func mustOpen(t testing.TB, opts Options) *Spool {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s) error = %v", opts.Path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close() error = %v", err)
		}
		checkCounters(t, opts.Path)
	})
	return s
}

// checkCounters scans a closed spool file and compares its readings with
// the meta bucket's counters.
func checkCounters(t testing.TB, path string) {
	t.Helper()
	if err := countersMatch(path); err != nil {
		t.Errorf("check counters of %s: %v", path, err)
	}
}

// countersMatch is checkCounters' check, returning what it found wrong.
func countersMatch(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(record.BucketMeta)
		if meta == nil {
			return fmt.Errorf("no meta bucket")
		}
		var n, size uint64
		err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if _, err := reading.ParseStreamID(string(name)); err != nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				n++
				size += uint64(len(k) + len(v) + record.EntryOverhead)
				return nil
			})
		})
		if err != nil {
			return err
		}
		if got := record.GetU64(meta, record.KeyReadings); got != n {
			return fmt.Errorf("meta readings = %d; the file holds %d", got, n)
		}
		if got := record.GetU64(meta, record.KeyBytes); got != size {
			return fmt.Errorf("meta bytes = %d; the file holds %d", got, size)
		}
		return nil
	})
}

// sample returns the test reading number i: its value is i, so a reading's
// contents show which append it came from.
func sample(i int) reading.Reading {
	return reading.Reading{
		Sensor: fmt.Sprintf("greenhouse.s%d", i%4),
		Value:  float64(i),
		Unit:   "C",
		Time:   time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * 100 * time.Millisecond),
	}
}

// appendN appends n samples numbered from first and waits for their
// commit. It returns the seqs given.
func appendN(t testing.TB, s *Spool, first, n int) []uint64 {
	t.Helper()
	ctx := context.Background()
	seqs := make([]uint64, 0, n)
	for i := first; i < first+n; i++ {
		seq, err := s.Append(ctx, sample(i), 0)
		if err != nil {
			t.Fatalf("Append(%d) error = %v", i, err)
		}
		seqs = append(seqs, seq)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush() error = %v", err)
	}
	return seqs
}

// drainAll reads every batch without acknowledging it.
func drainAll(t testing.TB, s *Spool) []*reading.Batch {
	t.Helper()
	var out []*reading.Batch
	for {
		b, err := s.Next(1000, 1<<20)
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		if b == nil {
			return out
		}
		out = append(out, b)
	}
}

func seqsOf(batches []*reading.Batch) []uint64 {
	var seqs []uint64
	for _, b := range batches {
		for _, r := range b.Readings {
			seqs = append(seqs, r.Seq)
		}
	}
	return seqs
}

// pagesInUse returns the bytes of a closed bbolt file's pages up to its
// high-water page (its size without bbolt's growth slack).
func pagesInUse(t testing.TB, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}
