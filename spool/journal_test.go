//go:build !arm

package spool

import (
	"encoding/binary"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/powercut"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/journal"
	"github.com/outpost-iot/outpost/spool/record"
)

// journalRecords returns the offsets and lengths of the valid records of
// the journal image data (the layout package journal documents).
func journalRecords(t *testing.T, data []byte) (offs, lens []int) {
	t.Helper()
	start := int(binary.LittleEndian.Uint32(data[16:]))
	off := start
	n, err := journal.Decode(data, func(p []byte) error {
		offs, lens = append(offs, off), append(lens, len(p))
		off += 8 + len(p)
		return nil
	})
	if err != nil || n != len(offs) {
		t.Fatalf("decode journal: %d records, %v", n, err)
	}
	return offs, lens
}

// committedSeq reads the committed high-water mark of a closed spool file.
func committedSeq(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq uint64
	_ = db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(record.BucketMeta); m != nil {
			seq = record.GetU64(m, record.KeySeq)
		}
		return nil
	})
	return seq
}

// TestPowerCutTornJournal cuts the power under a sampling child (SIGKILL,
// then a cut dropping every unsynced write or tearing them page by page),
// and after each cut also tears the journal's last surviving record by
// hand, as a write cut short in the middle of a record would: that record
// and what follows it are discarded, never replayed as garbage, every
// committed reading is still there with its contents, every stored value
// is one a child wrote for that seq, and no seq, once stored, is ever
// stored with other contents.
func TestPowerCutTornJournal(t *testing.T) {
	fsys := powercut.MountT(t)
	path := filepath.Join(fsys.Mountpoint(), "spool.db")
	jpath := filepath.Join(fsys.Backing(), "spool.db.journal")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 27))
	cycles := 12
	if testing.Short() {
		cycles = 6
	}
	stored := map[uint64]float64{} // what a check found stored, by seq
	var committed, stream uint64
	var tears, tornDiscarded, replayedChecks, checked int
	lives := 0
	for cycle := range cycles {
		lives++
		l := runTaker(t, path, "take", lives, 200*time.Millisecond, time.Duration(200+rng.IntN(800))*time.Millisecond)
		committed = max(committed, l.committed)
		mode := powercut.DropAll
		if cycle%2 == 1 {
			mode = powercut.Torn
		}
		if _, err := fsys.Cut(mode, rng.Uint64()); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		// Tear the last record that survived the cut: its second half
		// is zeros, as if the cut came in the middle of its write.
		tornSeq := uint64(0)
		hwm0 := committedSeq(t, filepath.Join(fsys.Backing(), "spool.db"))
		if data, err := os.ReadFile(jpath); err == nil && len(data) >= journal.HeaderSize {
			offs, lens := journalRecords(t, data)
			if n := len(offs); n > 0 {
				off, ln := offs[n-1], lens[n-1]
				e, err := decodeJournalRecord(data[off+8:off+8+ln], "pi-07")
				if err == nil && e.p != nil && e.p.seq > hwm0 {
					tornSeq = e.p.seq
				}
				clear(data[off+8+ln/2 : off+8+ln])
				if err := os.WriteFile(jpath, data, 0o600); err != nil {
					t.Fatal(err)
				}
				tears++
			}
		}
		d := runTaker(t, path, "dump", 0, time.Hour, 0)
		if stream != 0 && d.stream != stream {
			t.Fatalf("cycle %d: the stream changed %x → %x (a file quarantined or lost)", cycle, stream, d.stream)
		}
		stream = d.stream
		if d.hwm > hwm0 {
			replayedChecks++
		}
		for seq := uint64(1); seq <= committed; seq++ {
			if _, ok := d.have[seq]; !ok {
				t.Fatalf("cycle %d: committed seq %d lost (committed up to %d)", cycle, seq, committed)
			}
			checked++
		}
		for seq, v := range d.have {
			if seq >= tornSeq && tornSeq > 0 {
				t.Fatalf("cycle %d: seq %d stored; the journal record of seq %d was torn, so nothing from it on may replay", cycle, seq, tornSeq)
			}
			life := int((v - float64(seq)) / 1e7)
			if life < 1 || life > lives || v != takerValue(life, seq) {
				t.Fatalf("cycle %d: seq %d holds %v, which no child wrote for it", cycle, seq, v)
			}
			if old, ok := stored[seq]; ok && old != v {
				t.Fatalf("cycle %d: seq %d stored with two contents: %v, then %v", cycle, seq, old, v)
			}
			stored[seq] = v
		}
		if tornSeq > 0 {
			tornDiscarded++
		}
		committed = max(committed, d.hwm) // the dump's open committed what it replayed
	}
	t.Logf("%d power cuts (half torn): %d journal records torn by hand (%d of readings not yet committed, each discarded with what followed), %d opens replayed readings, %d committed seqs checked, 0 lost, no seq with two contents",
		cycles, tears, tornDiscarded, replayedChecks, checked)
	if checked == 0 || tears == 0 {
		t.Fatalf("the test tested nothing: %d seqs checked, %d records torn", checked, tears)
	}
}

// FuzzJournalReplay feeds arbitrary journal images to the decoder that
// replay uses (records, then their payloads): it must never panic, and a
// payload it passes decodes to a valid reading or an ack, or is refused.
func FuzzJournalReplay(f *testing.F) {
	dir := f.TempDir()
	j, err := journal.Open(filepath.Join(dir, "j"))
	if err != nil {
		f.Fatal(err)
	}
	p := pending{r: sample(7), seq: 7, bootTime: time.Second}
	p.r.Labels = map[string]string{"room": "a"}
	a := ackOp{stream: 9, runs: []seqRange{{1, 5}}, dropped: []reading.Dropped{{Stream: 9, From: 2, To: 3}}}
	_ = j.Append(appendJournalReading(nil, 9, &p))
	_ = j.Append(appendJournalAck(nil, &a))
	_ = j.Close()
	img, err := os.ReadFile(filepath.Join(dir, "j"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(img[:256])
	f.Add(img[:40])
	f.Add([]byte("OPJ1"))
	f.Add(appendJournalReading(nil, 9, &p)) // bare payloads reach the payload decoder
	f.Add(appendJournalAck(nil, &a))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(b []byte) error {
			e, err := decodeJournalRecord(b, "pi-07")
			if err != nil {
				return nil
			}
			if (e.p == nil) == (e.ack == nil) {
				t.Fatalf("decoded %+v: want a reading or an ack", e)
			}
			if e.p == nil {
				return nil
			}
			r := e.p.r
			r.Device, r.Seq = "pi-07", e.p.seq
			if err := r.Validate(); err != nil {
				t.Fatalf("decoded an invalid reading: %v", err)
			}
			// What decodes survives encoding and decoding again.
			b1 := appendJournalReading(nil, e.stream, e.p)
			e2, err := decodeJournalRecord(b1, "pi-07")
			if err != nil {
				t.Fatalf("re-encoded reading does not decode: %v", err)
			}
			if e2.p.seq != e.p.seq || e2.p.bootTime != e.p.bootTime || !e2.p.r.Time.Equal(e.p.r.Time) ||
				math.Float64bits(e2.p.r.Value) != math.Float64bits(e.p.r.Value) || e2.p.r.Sensor != e.p.r.Sensor ||
				e2.p.r.Unit != e.p.r.Unit || !maps.Equal(e2.p.r.Labels, e.p.r.Labels) || e2.p.r.Unsynced != e.p.r.Unsynced {
				t.Fatalf("reading changed through encoding: %+v → %+v", e.p, e2.p)
			}
			return nil
		}
		_ = check(data)
		_, _ = journal.Decode(data, check)
	})
}
