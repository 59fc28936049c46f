package salvage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/boltsurgeon"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

const stream = reading.StreamID(0x9f3c2a71d04b88e1)

// spoolFile writes a spool file of stream holding readings 1..n (value:
// the seq) with the values of the seqs in garbled made unreadable.
func spoolFile(t *testing.T, n int, garbled ...uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spool.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: record.PageSize, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := record.Init(tx, record.Stream{ID: stream, Created: 1}, 0); err != nil {
			return err
		}
		r := reading.Reading{Sensor: "g.t", Unit: "C"}
		id, err := record.NewTable().SeriesID(tx, record.AppendSeriesKey(nil, &r))
		if err != nil {
			return err
		}
		b := tx.Bucket(record.StreamBucket(stream))
		t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
		for seq := uint64(1); seq <= uint64(n); seq++ {
			v := record.AppendStored(nil, &record.Stored{Series: id, Time: t0.Add(time.Duration(seq) * time.Second), Value: float64(seq)})
			if slices.Contains(garbled, seq) {
				v[0] = record.FlagReserved
			}
			if err := b.Put(record.Itob(seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestChunksSkipAnUnreadableRun: a run of values that do not decode ends
// a chunk; the reading goes on from the first seq that reads again, and
// the run is named among the problems.
func TestChunksSkipAnUnreadableRun(t *testing.T) {
	var bad []uint64
	for seq := uint64(40); seq <= 55; seq++ {
		bad = append(bad, seq)
	}
	var problems []string
	f, err := Open(spoolFile(t, 100, bad...), time.Second, &problems)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.ReadTables()
	if len(f.Series) != 1 || len(f.Streams) != 1 || f.Streams[0].ID != stream || len(problems) != 0 {
		t.Fatalf("tables: %d series, streams %+v, problems %q; want one series, stream %v, no problem", len(f.Series), f.Streams, problems, stream)
	}
	var seqs []uint64
	for chunk, err := range f.Chunks(context.Background(), f.Streams[0], 30) {
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range chunk {
			if e.Reading.Value != float64(e.Seq) || e.Reading.Sensor != "g.t" {
				t.Fatalf("seq %d: %+v", e.Seq, e.Reading)
			}
			seqs = append(seqs, e.Seq)
		}
	}
	var want []uint64
	for seq := uint64(1); seq <= 100; seq++ {
		if !slices.Contains(bad, seq) {
			want = append(want, seq)
		}
	}
	if !slices.Equal(seqs, want) {
		t.Errorf("salvaged seqs %v; want 1–39 and 56–100", seqs)
	}
	if p := strings.Join(problems, "; "); !strings.Contains(p, "seqs 40–55 unreadable, skipped") {
		t.Errorf("problems %q; want the run 40–55 named", p)
	}
}

func TestChunksStopWithTheContext(t *testing.T) {
	var problems []string
	f, err := Open(spoolFile(t, 10), time.Second, &problems)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.ReadTables()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for chunk, err := range f.Chunks(ctx, f.Streams[0], 30) {
		if !errors.Is(err, context.Canceled) || chunk != nil {
			t.Fatalf("Chunks after cancel = %v, %v; want context.Canceled", chunk, err)
		}
	}
}

func TestReachable(t *testing.T) {
	path := spoolFile(t, 2000)
	scratch := filepath.Join(t.TempDir(), "scratch")
	if rebuilt, damage, err := Reachable(path, scratch); rebuilt || damage != nil || err != nil {
		t.Fatalf("Reachable(intact file) = %v, %q, %v; want it read as it is", rebuilt, damage, err)
	}
	if _, err := boltsurgeon.CycleBucket(path, record.StreamBucket(stream)); err != nil {
		t.Fatal(err)
	}
	rebuilt, damage, err := Reachable(path, scratch)
	if !rebuilt || err != nil || !strings.Contains(strings.Join(damage, "; "), "reached twice") {
		t.Fatalf("Reachable(cyclic file) = %v, %q, %v; want a rebuilt scratch file and the cycle among the damage", rebuilt, damage, err)
	}
	if _, err := os.Stat(scratch); err != nil {
		t.Errorf("no scratch file: %v", err)
	}
}
