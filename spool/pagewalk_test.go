package spool

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/boltsurgeon"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// cyclicSpoolFile writes a spool file of n readings and patches the last
// child pointer of its stream bucket's root (a branch page) to point at
// the root itself: a page cycle, on which bbolt's Cursor.Last descends
// forever. It returns the file's stream and the first seq lost with the
// patched child (the readings below it stay reachable).
func cyclicSpoolFile(t *testing.T, opts Options, n int) (reading.StreamID, uint64) {
	t.Helper()
	stream := makeSpoolFile(t, opts, n)
	lost, err := boltsurgeon.CycleBucket(opts.Path, record.StreamBucket(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 8 {
		t.Fatalf("branch key of %d bytes; want a seq", len(lost))
	}
	return stream, record.Btoi(lost)
}

// within runs fn and fails the test if it has not returned after d (fn is
// then left running: the test binary ends with the failure).
func within[T any](t *testing.T, d time.Duration, what string, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("%s did not return within %v: it loops on the page cycle", what, d)
		panic("unreachable")
	}
}

func TestCheckPagesFindsCycle(t *testing.T) {
	opts := testOptions(t.TempDir())
	makeSpoolFile(t, opts, 1000)
	if err := boltfile.CheckPages(opts.Path); err != nil {
		t.Fatalf("checkPages(intact file) = %v; want nil", err)
	}
	cyclicSpoolFile(t, opts, 1000)
	err := within(t, 30*time.Second, "checkPages", func() error { return boltfile.CheckPages(opts.Path) })
	if !isCorrupt(err) || !strings.Contains(err.Error(), "reached twice") {
		t.Fatalf("checkPages(cyclic file) = %v; want ErrCorrupt naming a page reached twice", err)
	}
}

// TestSalvageCyclicFile salvages a file whose stream bucket's B+tree has a
// page cycle: it must end, and bring back every reading outside the
// damaged subtree, with its stream, seq and contents.
func TestSalvageCyclicFile(t *testing.T) {
	dir := t.TempDir()
	src := testOptions(filepath.Join(dir, "old"))
	os.Mkdir(filepath.Dir(src.Path), 0o700)
	old, lost := cyclicSpoolFile(t, src, 1000)
	if lost < 100 || lost > 1000 {
		t.Fatalf("fixture: first lost seq %d; want most readings reachable", lost)
	}
	s := mustOpen(t, testOptions(dir))
	type result struct {
		rep SalvageReport
		err error
	}
	res := within(t, 60*time.Second, "Salvage", func() result {
		rep, err := s.Salvage(context.Background(), src.Path)
		return result{rep, err}
	})
	rep, err := res.rep, res.err
	if err != nil {
		t.Fatalf("Salvage() error = %v (%+v)", err, rep)
	}
	if rep.Readings != lost-1 || rep.Streams != 1 || len(rep.Problems) == 0 || !strings.Contains(strings.Join(rep.Problems, "; "), "reached twice") {
		t.Fatalf("Salvage() = %+v; want %d readings and the cycle among the problems", rep, lost-1)
	}
	if _, err := os.Stat(s.opts.Path + salvageScratchSuffix); !os.IsNotExist(err) {
		t.Errorf("the scratch file is left behind: %v", err)
	}
	want := uint64(1)
	for _, b := range drainAll(t, s) {
		for _, r := range b.Readings {
			if r.Stream != old || r.Seq != want || r.Value != float64(want) {
				t.Fatalf("salvaged reading: stream %v seq %d value %v; want %v, %d, %d", r.Stream, r.Seq, r.Value, old, want, want)
			}
			want++
		}
	}
	if want != lost {
		t.Fatalf("drained seqs 1–%d; want 1–%d", want-1, lost-1)
	}
}

// TestOpenCyclicFileQuarantines opens a file with a page cycle after an
// open that died, which walks every key before bbolt opens the file for
// writing: the open must end, quarantining the file, not loop (a hang at
// open would crash-loop the service).
func TestOpenCyclicFileQuarantines(t *testing.T) {
	opts := testOptions(t.TempDir())
	cyclicSpoolFile(t, opts, 1000)
	beginOpen(opts.Path) // left behind, as by a crash during an open
	type result struct {
		s   *Spool
		err error
	}
	res := within(t, 60*time.Second, "Open", func() result {
		s, err := Open(opts)
		return result{s, err}
	})
	if res.err != nil {
		t.Fatalf("Open() error = %v", res.err)
	}
	defer res.s.Close(context.Background())
	st, _ := res.s.Stats()
	if st.Quarantined != 1 || len(quarantinedFiles(t, opts.Path)) != 1 {
		t.Fatalf("quarantined %d, files %v; want the cyclic file quarantined", st.Quarantined, quarantinedFiles(t, opts.Path))
	}
}

// TestDrainCyclicFileQuarantines drains a file with a page cycle that an
// open did not check (its last close synced the freelist, so bbolt did
// not walk the tree): the cursor comes back to old keys, which the drain
// takes as corruption and quarantines the file, instead of handing out
// the same readings forever.
func TestDrainCyclicFileQuarantines(t *testing.T) {
	opts := testOptions(t.TempDir())
	old, _ := cyclicSpoolFile(t, opts, 1000)
	s := mustOpen(t, opts)
	handed := within(t, 60*time.Second, "drain", func() int {
		n := 0
		for range 100 {
			b, err := s.Next(1000, 1<<20)
			if err != nil {
				if !isCorrupt(err) {
					t.Errorf("Next() error = %v; want ErrCorrupt", err)
				}
				return n
			}
			if b == nil {
				return n
			}
			n += len(b.Readings)
		}
		return n
	})
	if handed > 1000 {
		t.Fatalf("Next handed out %d readings of a file of 1000", handed)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(); st.Stream == old || st.Quarantined != 1 {
		t.Fatalf("after draining a cyclic file: stream %v (old %v), quarantined %d; want it quarantined", st.Stream, old, st.Quarantined)
	}
}
