package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// makeSpoolFile writes a spool holding n committed readings and returns its
// stream.
func makeSpoolFile(t *testing.T, opts Options, n int) reading.StreamID {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 1, n)
	st, _ := s.Stats()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st.Stream
}

func quarantinedFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + boltfile.QuarantineSuffix + "*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCorruptFilesAreQuarantined(t *testing.T) {
	corruptions := []struct {
		name    string
		corrupt func(b []byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:100] }},
		{"truncated to 3 pages", func(b []byte) []byte { return b[:3*record.PageSize] }},
		{"zero-filled", func(b []byte) []byte { return make([]byte, len(b)) }},
		{"flipped bytes in both meta pages", func(b []byte) []byte {
			for _, off := range []int{16 + 20, record.PageSize + 16 + 20} {
				b[off] ^= 0xff
			}
			return b
		}},
		{"not a database", func([]byte) []byte { return []byte(strings.Repeat("hello, spool\n", 1000)) }},
	}
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			opts := testOptions(t.TempDir())
			old := makeSpoolFile(t, opts, 100)
			b, err := os.ReadFile(opts.Path)
			if err != nil {
				t.Fatal(err)
			}
			bad := c.corrupt(b)
			if err := os.WriteFile(opts.Path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			s := mustOpen(t, opts)
			st, _ := s.Stats()
			if st.Stream == old || st.Quarantined != 1 || st.Readings != 0 {
				t.Errorf("after quarantine: stream %v (old %v), quarantined %d, readings %d", st.Stream, old, st.Quarantined, st.Readings)
			}
			q := quarantinedFiles(t, opts.Path)
			if len(q) != 1 {
				t.Fatalf("quarantined files = %v; want one", q)
			}
			if kept, _ := os.ReadFile(q[0]); !bytes.Equal(kept, bad) {
				t.Errorf("the quarantined file does not hold the original bytes")
			}
			if seqs := appendN(t, s, 1, 3); seqs[0] != 1 {
				t.Errorf("new stream starts at seq %d; want 1", seqs[0])
			}
		})
	}
}

func TestForeignBoltFileIsQuarantined(t *testing.T) {
	opts := testOptions(t.TempDir())
	db, err := bolt.Open(opts.Path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := mustOpen(t, opts)
	if st, _ := s.Stats(); st.Quarantined != 1 || len(quarantinedFiles(t, opts.Path)) != 1 {
		t.Errorf("a bbolt file without a meta bucket was not quarantined: %+v", st)
	}
}

func TestNewerFormatIsRefusedNotQuarantined(t *testing.T) {
	opts := testOptions(t.TempDir())
	makeSpoolFile(t, opts, 10)
	db, err := bolt.Open(opts.Path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return record.PutU64(tx.Bucket(record.BucketMeta), record.KeyFormat, FormatVersion+1)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(opts.Path)
	s, err := Open(opts)
	if !errors.Is(err, ErrNewerFormat) {
		if s != nil {
			s.Close(context.Background())
		}
		t.Fatalf("Open(newer format) error = %v; want ErrNewerFormat", err)
	}
	if q := quarantinedFiles(t, opts.Path); len(q) != 0 {
		t.Errorf("a newer file was quarantined: %v", q)
	}
	if after, _ := os.ReadFile(opts.Path); !bytes.Equal(before, after) {
		t.Errorf("Open changed a file it refused")
	}
}

func TestPanicAtCommitQuarantinesAndCarriesOn(t *testing.T) {
	opts := testOptions(t.TempDir())
	old := makeSpoolFile(t, opts, 10)
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	var panics atomic.Int32
	s.mu.Lock() // the writer reads the hook inside its commit
	s.commitHook = func() {
		if panics.Add(1) == 1 {
			panic("page 42 already freed")
		}
	}
	s.mu.Unlock()
	t.Cleanup(func() { s.Close(context.Background()) })
	ctx := context.Background()
	seq, err := s.Append(ctx, sample(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush() after a commit panic = %v; want the reading committed in a new file", err)
	}
	st, _ := s.Stats()
	if st.Stream == old || st.Quarantined != 1 || st.Seq != 1 || st.Readings != 1 || seq != 11 {
		t.Errorf("after the panic: stream %v (old %v), quarantined %d, seq %d, readings %d (append gave %d)",
			st.Stream, old, st.Quarantined, st.Seq, st.Readings, seq)
	}
	if len(quarantinedFiles(t, opts.Path)) != 1 {
		t.Errorf("no quarantined file")
	}
	b, _ := s.Next(10, 1<<20)
	if b == nil || b.Stream != st.Stream || b.From != 1 || b.Readings[0].Value != 1 {
		t.Errorf("Next() after quarantine = %+v", b)
	}
}

// openEnv names the spool file TestHelperOpen opens.
const openEnv = "OUTPOST_SPOOL_OPEN"

// TestHelperOpen is a process of TestCorruptPagesAreQuarantinedAtOpen, not
// a test: it opens the spool and closes it.
func TestHelperOpen(t *testing.T) {
	path := os.Getenv(openEnv)
	if path == "" {
		t.Skip("the opening process of TestCorruptPagesAreQuarantinedAtOpen")
	}
	s, err := Open(Options{Path: path, Device: "pi-07"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
}

// TestCorruptPagesAreQuarantinedAtOpen garbles every data page. bbolt's
// freelist rebuild at open walks the pages in a goroutine of its own,
// where the panic kills the process: the first open (in a child process)
// may die, and the next one, seeing the open marker it left, checks the
// file itself and quarantines it instead of dying again.
func TestCorruptPagesAreQuarantinedAtOpen(t *testing.T) {
	opts := testOptions(t.TempDir())
	old := makeSpoolFile(t, opts, 2000)
	b, err := os.ReadFile(opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	for off := 2 * record.PageSize; off+record.PageSize <= len(b); off += record.PageSize {
		for i := off + 16; i < off+record.PageSize; i++ {
			b[i] = 0xa5
		}
	}
	if err := os.WriteFile(opts.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOpen$", "-test.count=1")
	cmd.Env = append(os.Environ(), openEnv+"="+opts.Path)
	out, childErr := cmd.CombinedOutput()
	t.Logf("first open (child process): %v", childErr)
	if childErr != nil && !strings.Contains(string(out), "panic") {
		t.Fatalf("the child died without a panic: %v\n%s", childErr, out)
	}
	s := mustOpen(t, opts) // the second open must not die
	st, _ := s.Stats()
	if st.Stream == old || st.Quarantined != 1 || len(quarantinedFiles(t, opts.Path)) != 1 {
		t.Errorf("after garbled pages: stream %v (old %v), quarantined %d", st.Stream, old, st.Quarantined)
	}
	if _, err := os.Stat(openMarker(opts.Path)); err == nil {
		t.Errorf("the open marker is still there after a finished open")
	}
	if seqs := appendN(t, s, 1, 3); seqs[0] != 1 {
		t.Errorf("new stream starts at seq %d; want 1", seqs[0])
	}
}

// TestCorruptValueIsDeadLettered: one stored value that does not decode
// is the damage of one reading, not of the file. The drain dead-letters
// it, with the decode error as its reason, and hands out every other
// reading; the file is not quarantined.
func TestCorruptValueIsDeadLettered(t *testing.T) {
	// Each keeps the value's length, so the meta counters stay right.
	for name, garble := range map[string]func(v []byte){
		"reserved flag": func(v []byte) { v[0] = record.FlagReserved },
		"all 0xff":      func(v []byte) { copy(v, bytes.Repeat([]byte{0xff}, len(v))) },
		"cut varints":   func(v []byte) { copy(v[1:], bytes.Repeat([]byte{0x80}, len(v)-1)) },
	} {
		t.Run(name, func(t *testing.T) {
			opts := testOptions(t.TempDir())
			old := makeSpoolFile(t, opts, 20)
			db, err := bolt.Open(opts.Path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(record.StreamBucket(old))
				v := bytes.Clone(b.Get(record.Itob(5)))
				garble(v)
				return b.Put(record.Itob(5), v)
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			s := mustOpen(t, opts)
			var seqs []uint64
			for {
				b, err := s.Next(4, 1<<20) // seq 5 opens the second batch
				if err != nil {
					t.Fatalf("Next() over a corrupt value error = %v; want the other readings", err)
				}
				if b == nil {
					break
				}
				for _, r := range b.Readings {
					if r.Value != float64(r.Seq) {
						t.Errorf("seq %d: value %v", r.Seq, r.Value)
					}
					seqs = append(seqs, r.Seq)
				}
				if err := s.Ack(b); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := []uint64{1, 2, 3, 4}
			for seq := uint64(6); seq <= 20; seq++ {
				want = append(want, seq)
			}
			if !slices.Equal(seqs, want) {
				t.Errorf("drained seqs %v; want %v", seqs, want)
			}
			dls, err := s.DeadLetters()
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != 1 || dls[0].Stream != old || dls[0].From != 5 || dls[0].To != 5 || dls[0].Count != 1 ||
				!strings.Contains(dls[0].Reason, "malformed reading value") {
				t.Fatalf("dead letters = %+v; want seq 5 of %v with the decode error as reason", dls, old)
			}
			t.Logf("reason: %s", dls[0].Reason)
			st, _ := s.Stats()
			if st.Stream != old || st.Quarantined != 0 || len(quarantinedFiles(t, opts.Path)) != 0 || st.Readings != 0 {
				t.Errorf("after a corrupt value: stream %v (old %v), quarantined %d, readings %d; want the file kept, drained", st.Stream, old, st.Quarantined, st.Readings)
			}
			if b, err := s.Next(100, 1<<20); err != nil || b != nil {
				t.Errorf("Next() after the drain = %+v, %v; want nothing", b, err)
			}
		})
	}
}

func TestRepeatedDeathsAtOpenQuarantine(t *testing.T) {
	opts := testOptions(t.TempDir())
	old := makeSpoolFile(t, opts, 10)
	// Two opens died in a row (a bbolt panic out of reach), though the
	// file checks clean: the third quarantines instead of trying again.
	if err := os.WriteFile(openMarker(opts.Path), []byte("2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, opts)
	if st, _ := s.Stats(); st.Stream == old || st.Quarantined != 1 {
		t.Errorf("after two deaths at open: stream %v (old %v), quarantined %d; want a new stream", st.Stream, old, st.Quarantined)
	}
}

func TestOneDeathAtOpenChecksAndKeepsAGoodFile(t *testing.T) {
	opts := testOptions(t.TempDir())
	old := makeSpoolFile(t, opts, 10)
	if err := os.WriteFile(openMarker(opts.Path), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, opts)
	if st, _ := s.Stats(); st.Stream != old || st.Quarantined != 0 || st.Readings != 10 {
		t.Errorf("after one death at open: stream %v (old %v), quarantined %d, readings %d; want the file kept", st.Stream, old, st.Quarantined, st.Readings)
	}
}

func TestDeadLetterDuringQuarantineReturns(t *testing.T) {
	opts := testOptions(t.TempDir())
	makeSpoolFile(t, opts, 10)
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	b, err := s.Next(5, 1<<20)
	if err != nil || b == nil {
		t.Fatalf("Next() = %v, %v", b, err)
	}
	var panics atomic.Int32
	s.mu.Lock()
	s.commitHook = func() {
		if panics.Add(1) == 1 {
			panic("page 9 already freed")
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.DeadLetter(ctx, b, "400"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DeadLetter() while the file is quarantined: %v; want ErrCorrupt (not a hang)", err)
	}
}

// setBoot makes beginOpen read the boot id id, until the test ends.
func setBoot(t *testing.T, id string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "boot_id")
	if err := os.WriteFile(f, []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := bootIDFile
	bootIDFile = f
	t.Cleanup(func() { bootIDFile = old })
}

// TestPowerCutsDuringOpenKeepAGoodFile: the power went twice in a row
// while the spool opened (each leaving its open marker, in a boot of its
// own); the open in the third boot keeps the file, while two opens that
// died in one boot still quarantine it.
func TestPowerCutsDuringOpenKeepAGoodFile(t *testing.T) {
	boots := []string{
		"6f1c0e52-8a7d-4c61-9a43-0d2b7a4f1e01",
		"6f1c0e52-8a7d-4c61-9a43-0d2b7a4f1e02",
		"6f1c0e52-8a7d-4c61-9a43-0d2b7a4f1e03",
	}
	t.Run("power cuts", func(t *testing.T) {
		opts := testOptions(t.TempDir())
		old := makeSpoolFile(t, opts, 10)
		for _, b := range boots[:2] {
			setBoot(t, b)
			if died := beginOpen(opts.Path); died != 0 {
				t.Fatalf("boot %s: beginOpen() = %d died; want 0 (the marker is from another boot)", b, died)
			}
		}
		setBoot(t, boots[2])
		s := mustOpen(t, opts)
		if st, _ := s.Stats(); st.Stream != old || st.Quarantined != 0 || st.Readings != 10 {
			t.Errorf("after two power cuts during open: stream %v (old %v), quarantined %d, readings %d; want the file kept", st.Stream, old, st.Quarantined, st.Readings)
		}
		if _, err := os.Stat(openMarker(opts.Path)); err == nil {
			t.Errorf("the open marker is still there after a finished open")
		}
	})
	t.Run("crashes in one boot", func(t *testing.T) {
		opts := testOptions(t.TempDir())
		old := makeSpoolFile(t, opts, 10)
		setBoot(t, boots[0])
		for want := range 2 {
			if died := beginOpen(opts.Path); died != want {
				t.Fatalf("beginOpen() = %d died; want %d", died, want)
			}
		}
		b, _ := os.ReadFile(openMarker(opts.Path))
		if got := strings.TrimSpace(string(b)); got != "2 "+boots[0] {
			t.Errorf("marker %q; want the count and the boot id", got)
		}
		s := mustOpen(t, opts)
		if st, _ := s.Stats(); st.Stream == old || st.Quarantined != 1 {
			t.Errorf("after two deaths at open in one boot: stream %v (old %v), quarantined %d; want a new stream", st.Stream, old, st.Quarantined)
		}
	})
	t.Run("old or empty marker", func(t *testing.T) {
		setBoot(t, boots[0])
		for content, want := range map[string]int{"": 1, "1\n": 1, "2\n": 2, "1 garbage\n": 1} {
			path := filepath.Join(t.TempDir(), "spool.db")
			if err := os.WriteFile(openMarker(path), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if died := beginOpen(path); died != want {
				t.Errorf("marker %q: beginOpen() = %d died; want %d", content, died, want)
			}
		}
	})
}

// A batch's worth of unreadable values in a row is dead-lettered and the
// drain goes on past it: Next does not answer "nothing to send" while
// readable readings wait behind them.
func TestUnreadableRunDoesNotEndTheDrain(t *testing.T) {
	opts := testOptions(t.TempDir())
	old := makeSpoolFile(t, opts, 20)
	db, err := bolt.Open(opts.Path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(record.StreamBucket(old))
		for seq := uint64(5); seq <= 12; seq++ { // two whole batches of 4
			v := bytes.Clone(b.Get(record.Itob(seq)))
			v[0] = record.FlagReserved
			if err := b.Put(record.Itob(seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, opts)
	var seqs []uint64
	for {
		b, err := s.Next(4, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			break
		}
		for _, r := range b.Readings {
			seqs = append(seqs, r.Seq)
		}
		if err := s.Ack(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 2, 3, 4, 13, 14, 15, 16, 17, 18, 19, 20}
	if !slices.Equal(seqs, want) {
		t.Fatalf("drained seqs %v; want %v", seqs, want)
	}
	dls, err := s.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	var dead []uint64
	for _, d := range dls {
		for seq := d.From; seq <= d.To; seq++ {
			dead = append(dead, seq)
		}
	}
	slices.Sort(dead)
	if !slices.Equal(dead, []uint64{5, 6, 7, 8, 9, 10, 11, 12}) {
		t.Errorf("dead-lettered seqs %v (%+v); want 5–12", dead, dls)
	}
}
