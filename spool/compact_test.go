package spool

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func TestCompactionShrinksADrainedFile(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.CompactAbove = 256 << 10
	opts.CommitInterval = time.Hour
	s := mustOpen(t, opts)
	ctx := context.Background()
	n := 30_000
	for i := 1; i <= n; i += 1000 {
		appendN(t, s, i, 1000)
	}
	before, _ := s.Stats()
	// Drain all but the last 10, dead-letter one batch.
	var last *reading.Batch
	for {
		b, err := s.Next(1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			break
		}
		if b.To == uint64(n) {
			last = b
			continue
		}
		if err := s.Ack(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeadLetter(ctx, &reading.Batch{Stream: before.Stream, From: uint64(n) - 9, To: uint64(n)}, "400: test"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil { // the compaction runs after a commit
		t.Fatal(err)
	}
	after, _ := s.Stats()
	if after.FileSize*4 > before.FileSize || after.FileSize >= opts.CompactAbove {
		t.Fatalf("file %d bytes before, %d after draining; want compacted", before.FileSize, after.FileSize)
	}
	if _, err := os.Stat(compactPath(opts.Path)); err == nil {
		t.Errorf("temporary file left after compaction")
	}
	if after.Stream != before.Stream || after.Seq != uint64(n) || after.Readings != uint64(len(last.Readings))-10 || after.DeadLettered != 10 {
		t.Errorf("after compaction: stream %v seq %d readings %d dead %d; want %v %d %d 10",
			after.Stream, after.Seq, after.Readings, after.DeadLettered, before.Stream, n, len(last.Readings)-10)
	}
	if dl, _ := s.DeadLetters(); len(dl) != 1 {
		t.Errorf("dead letters after compaction = %+v", dl)
	}
	if seqs := appendN(t, s, n+1, 2); seqs[0] != uint64(n)+1 {
		t.Errorf("append after compaction got seq %d; want %d", seqs[0], n+1)
	}
}

func TestLeftoverCompactionFileIsRemovedAtOpen(t *testing.T) {
	opts := testOptions(t.TempDir())
	makeSpoolFile(t, opts, 10)
	if err := os.WriteFile(compactPath(opts.Path), []byte("half a compaction"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, opts)
	if _, err := os.Stat(compactPath(opts.Path)); err == nil {
		t.Errorf("leftover %s not removed at open", compactPath(opts.Path))
	}
	if st, _ := s.Stats(); st.Readings != 10 {
		t.Errorf("readings = %d; want 10", st.Readings)
	}
}
