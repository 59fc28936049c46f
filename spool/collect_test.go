package spool

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

// collect counts readings at an upper bound of their line while far from
// maxBytes and encodes them only near it: its batches must be exactly the
// greedy batches of encoded lines, for series with labels, escapes and
// long names, values of every magnitude, times with nanoseconds and
// unsynced clocks.
func TestCollectMatchesEncodedSizes(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.CommitInterval = time.Hour
	s := mustOpen(t, opts)
	rng := rand.New(rand.NewPCG(3, 5))
	values := []float64{0, 1, -1, 21.37, 1e-7, -1.2345678901234567e-06, 1.2345678901234567e-06, 123456789012345678901,
		9.99e20, -math.MaxFloat64, math.SmallestNonzeroFloat64, 0.1, 1234.5678}
	series := []reading.Reading{
		{Sensor: "t", Unit: ""},
		{Sensor: "greenhouse.temperature", Unit: "C"},
		{Sensor: "soil.moisture_with_a_rather_long_name.0123456789", Unit: "%", Labels: map[string]string{"bed": "north \"3\"", "crop": "tomato\\ü"}},
		{Sensor: "wind", Unit: "m/s", Labels: map[string]string{"a": "x"}},
	}
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	const n = 3000
	for i := range n {
		r := series[rng.IntN(len(series))]
		r.Value = values[rng.IntN(len(values))]
		r.Time = t0.Add(time.Duration(rng.Int64N(int64(1000 * time.Hour))))
		r.Unsynced = rng.IntN(3) == 0
		if _, err := s.Append(ctx, r, 0); err != nil {
			t.Fatalf("Append #%d: %v", i, err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	stream := s.stream
	s.mu.Unlock()
	var all []reading.Reading // every stored reading, decoded
	var lines []int           // and its line's length
	err := s.view(func(tx *bolt.Tx) error {
		s.tab.RLock()
		defer s.tab.RUnlock()
		return tx.Bucket(record.StreamBucket(stream)).ForEach(func(k, v []byte) error {
			r, err := s.decode(stream, record.Btoi(k), v)
			all = append(all, r)
			lines = append(lines, len(reading.AppendReading(nil, &r)))
			return err
		})
	})
	if err != nil || len(all) != n {
		t.Fatalf("read back %d of %d readings: %v", len(all), n, err)
	}
	checks, exact := 0, 0
	for _, maxBytes := range []int{1, 50, 150, 160, 200, 333, 500, 1000, 1500, 2048, 4096, 10000, 1 << 16, 1 << 20} {
		for _, maxReadings := range []int{1, 7, 100, 1000, n} {
			for _, start := range []int{0, 1, 17, n / 2, n - 3} {
				pre := rng.IntN(3) * 40 // bytes of dropped lines already in the batch
				want, size := 0, pre
				for i := start; i < n && want < maxReadings; i++ {
					if want > 0 && size+lines[i]+1 > maxBytes {
						break
					}
					size += lines[i] + 1
					want++
				}
				batch := &reading.Batch{Stream: stream}
				err := s.view(func(tx *bolt.Tx) error {
					s.drainMu.Lock()
					defer s.drainMu.Unlock()
					s.tab.RLock()
					defer s.tab.RUnlock()
					_, err := s.collect(tx.Bucket(record.StreamBucket(stream)), batch, all[start].Seq, reading.MaxSeq, pre, maxReadings, maxBytes)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(batch.Readings) != want {
					t.Fatalf("collect from seq %d, %d readings, %d bytes (%d held): %d readings; encoded lines give %d",
						all[start].Seq, maxReadings, maxBytes, pre, len(batch.Readings), want)
				}
				for i := range batch.Readings {
					if got, w := batch.Readings[i], all[start+i]; got.Seq != w.Seq || got.Value != w.Value || !got.Time.Equal(w.Time) {
						t.Fatalf("collect reading %d = %+v; want %+v", i, got, w)
					}
				}
				checks++
				if want < maxReadings && start+want < n {
					exact++ // the byte limit decided
				}
			}
		}
	}
	if exact < checks/4 {
		t.Fatalf("only %d of %d batches were cut by maxBytes: the test does not reach the exact path", exact, checks)
	}
}
