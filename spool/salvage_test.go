package spool

import (
	"context"
	"encoding/binary"
	"os"
	"sync/atomic"
	"testing"

	"github.com/outpost-iot/outpost/spool/record"
)

func TestSalvageQuarantinedFileKeepsStreamAndSeq(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.MaxBytes = 60 * 40 // some readings dropped: a pending range to carry over
	old := makeSpoolFile(t, opts, 100)
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	var panics atomic.Int32
	s.mu.Lock()
	s.commitHook = func() {
		if panics.Add(1) == 1 {
			panic("page 7 already freed")
		}
	}
	s.mu.Unlock()
	t.Cleanup(func() { s.Close(context.Background()) })
	ctx := context.Background()
	appendN(t, s, 1000, 5) // quarantines the old file, commits in a new one
	q := quarantinedFiles(t, opts.Path)
	if len(q) != 1 {
		t.Fatalf("quarantined files = %v", q)
	}
	before, _ := os.ReadFile(q[0])

	rep, err := s.Salvage(ctx, q[0])
	if err != nil {
		t.Fatalf("Salvage() error = %v", err)
	}
	st, _ := s.Stats()
	if rep.Streams != 1 || rep.Readings == 0 || rep.Ranges != 1 || len(rep.Problems) != 0 || st.Readings != rep.Readings+5 {
		t.Fatalf("Salvage() = %+v; spool holds %d readings", rep, st.Readings)
	}
	batches := drainAll(t, s)
	if len(batches) < 2 || batches[0].Stream != old || batches[len(batches)-1].Stream != st.Stream {
		t.Fatalf("drain order: first stream %v, last %v; want the salvaged %v first, then %v", batches[0].Stream, batches[len(batches)-1].Stream, old, st.Stream)
	}
	first := batches[0]
	if len(first.Dropped) != 1 || first.Dropped[0].From != 1 || first.Dropped[0].To != 100-rep.Readings {
		t.Errorf("salvaged dropped ranges = %+v; want 1–%d", first.Dropped, 100-rep.Readings)
	}
	for i, r := range first.Readings {
		want := 100 - rep.Readings + 1 + uint64(i)
		if r.Seq != want || r.Value != float64(want) || r.Stream != old {
			t.Fatalf("salvaged reading %d = stream %v seq %d value %v; want %v, %d, %d", i, r.Stream, r.Seq, r.Value, old, want, want)
		}
	}
	rep2, err := s.Salvage(ctx, q[0])
	if err != nil || rep2.Readings != 0 || rep2.Present != rep.Readings {
		t.Errorf("second Salvage() = %+v, %v; want nothing copied, %d present", rep2, err, rep.Readings)
	}
	if after, _ := os.ReadFile(q[0]); string(after) != string(before) {
		t.Errorf("Salvage changed the quarantined file")
	}
}

func TestSalvageOfGarbledFileKeepsWhatItCan(t *testing.T) {
	dir := t.TempDir()
	src := testOptions(dir)
	src.Path = dir + "/broken.db"
	makeSpoolFile(t, src, 5000)
	b, err := os.ReadFile(src.Path)
	if err != nil {
		t.Fatal(err)
	}
	// Garble the stream's leaf pages in the first 40% of the used part
	// of the file that hold only seqs below 4000: old, full leaves. Which
	// pages those are depends on how appends fell into commits (a commit
	// may put the live tail's leaf on a freed page early in the file), so
	// each page is looked at: bbolt's page header is id(8) flags(2)
	// count(2) overflow(4), then leaf elements of flags(4) pos(4)
	// ksize(4) vsize(4), pos counted from the element. Branch pages stay
	// whole: a garbled branch hides the subtree below it from salvage.
	used := int(pagesInUse(t, src.Path))
	const leafPage = 0x02
	garbled := 0
	for off := 2 * record.PageSize; off < used*4/10; off += record.PageSize {
		count := int(binary.LittleEndian.Uint16(b[off+10:]))
		if binary.LittleEndian.Uint16(b[off+8:]) != leafPage || count == 0 {
			continue
		}
		last := off + 16 + (count-1)*16
		pos, ksize := int(binary.LittleEndian.Uint32(b[last+4:])), int(binary.LittleEndian.Uint32(b[last+8:]))
		if ksize != 8 || last+pos+8 > off+record.PageSize || record.Btoi(b[last+pos:last+pos+8]) >= 4000 {
			continue
		}
		garbled++
		for i := off + 16; i < off+record.PageSize; i++ {
			b[i] = 0x5a
		}
	}
	if garbled == 0 {
		t.Fatal("no leaf page in the part of the file to garble")
	}
	if err := os.WriteFile(src.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, testOptions(dir))
	rep, err := s.Salvage(context.Background(), src.Path)
	t.Logf("salvage of a garbled file: %+v, %v", rep, err)
	if err == nil && rep.Readings == 5000 && len(rep.Problems) == 0 {
		t.Skip("the garbling hit no live page")
	}
	if err == nil && len(rep.Problems) == 0 {
		t.Errorf("Salvage() reported no problem with a garbled file: %+v", rep)
	}
	if rep.Readings < 1000 {
		t.Errorf("Salvage() kept %d of 5000 readings; want it to get past the garbled pages", rep.Readings)
	}
	st, _ := s.Stats()
	if st.Readings != rep.Readings {
		t.Errorf("spool holds %d readings; salvage reported %d", st.Readings, rep.Readings)
	}
	seqs := seqsOf(drainAll(t, s))
	if len(seqs) == 0 || seqs[len(seqs)-1] != 5000 {
		t.Errorf("the readable tail (up to seq 5000) was not salvaged")
	}
	for i, q := range seqs {
		if i > 0 && q <= seqs[i-1] {
			t.Fatalf("salvaged seqs out of order at %d: %d after %d", i, q, seqs[i-1])
		}
	}
}
