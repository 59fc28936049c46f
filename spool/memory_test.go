package spool

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// TestDrainMemoryIsFlat holds guarantee 5 (memory does not grow with the
// backlog) in the normal test pass; BenchmarkDrainMemory measures the
// same as RssAnon in a process of its own. It drains and acknowledges a
// backlog of 10k readings and one of 200k (5k and 100k with -short or
// under emulation), as an uplink does: batches of 500, four in flight,
// the oldest acknowledged as the next is taken, at full speed. The commit
// interval is an hour, so only the acknowledgements' own early commits
// (ackCommitReadings, ackBackpressure) bound a commit's deletes.
//
// What it compares is the live heap during each drain above the live heap
// before it: the peak of runtime/metrics' /gc/heap/live:bytes, sampled all
// through the drain with the GC made frequent (GOGC 20) so that it marks
// often. No garbage counts and no time is asserted. A flat drain's true
// peak is the same for both, about a MiB (four batches in flight and the
// deletes of one commit), but the sampled peak of a short drain falls
// short of it: a GC catches the biggest commit's transaction seldom, and
// the more GCs a longer drain gives, the closer it comes (measured under
// -race: 10k 0–370 KiB, 200k 300–850 KiB; the live heap at forced GCs
// through a 400k drain stays flat within 200 KiB). So the bound is a
// ratio, generous, over a floor: the large drain may take twice what the
// small one takes, counted as at least 1 MiB; flat drains come out at
// 0.3–0.8 of that.
//
// It fails when the drain's memory grows with the backlog: Next reading a
// stream beyond its batch, acknowledged ranges or handed-out batches kept
// after their commit, or a commit holding every delete of the drain (as
// when acks wait for the commit interval). Each grows twentyfold from the
// small drain to the large one, and anything that keeps more than about
// 10 bytes a drained reading (20 with -short) passes the bound: with
// ackCommitReadings made 1<<30 the large drain took 13 MiB, and keeping
// every batch Next hands out fails it too.
func TestDrainMemoryIsFlat(t *testing.T) {
	small, large := 10_000, 200_000
	if testing.Short() || emulated {
		small, large = 5_000, 100_000
	}
	dSmall := drainLiveHeap(t, small)
	dLarge := drainLiveHeap(t, large)
	const floor = 1 << 20
	ratio := float64(dLarge) / float64(max(dSmall, floor))
	t.Logf("live heap above the opened spool while draining %d readings: %d KiB, %d readings: %d KiB; %.2f times max(small, %d KiB) (at most 2)",
		small, dSmall>>10, large, dLarge>>10, ratio, floor>>10)
	if ratio > 2 {
		t.Errorf("draining %d readings took %d KiB of live heap, %d readings %d KiB: the drain's memory grows with the backlog (want at most twice, counting the smaller as at least %d KiB)",
			large, dLarge>>10, small, dSmall>>10, floor>>10)
	}
}

// drainLiveHeap fills a spool with n readings, then drains and
// acknowledges it all, and returns the peak live heap during the drain
// above the live heap of the opened spool before it.
func drainLiveHeap(t *testing.T, n int) uint64 {
	t.Helper()
	opts := testOptions(t.TempDir())
	opts.CommitInterval = time.Hour // Flush and the acks' own early commits commit
	opts.CommitReadings = DefaultMaxBufferedReadings
	opts.UnsafeNoSync = true // a quick fill; the drain is what is measured
	s := mustOpen(t, opts)
	ctx := context.Background()
	for i := range n {
		r, c := benchReading(i)
		if _, err := s.Append(ctx, r, c); err != nil {
			t.Fatal(err)
		}
		if (i+1)%DefaultMaxBufferedReadings == 0 {
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	defer debug.SetGCPercent(debug.SetGCPercent(20))
	runtime.GC()
	base := liveHeap()
	stop := samplePeak(liveHeap, time.Millisecond)
	drained := drainAcking(t, s, nil)
	if err := s.Flush(ctx); err != nil { // the last acks' commit counts too
		t.Fatal(err)
	}
	peak := max(stop(), liveHeap())
	if st, _ := s.Stats(); drained != n || st.Readings != 0 {
		t.Fatalf("drained %d of %d readings, %d left stored; want all drained and deleted", drained, n, st.Readings)
	}
	return peak - min(base, peak)
}

// drainAcking drains s as an uplink does: batches of 500 readings (256 KiB
// at most), four in flight, the oldest acknowledged when a fifth is taken
// or nothing is left, calling afterAck (if set) after each ack. It returns
// how many readings it drained.
func drainAcking(t *testing.T, s *Spool, afterAck func()) int {
	t.Helper()
	var inFlight []*reading.Batch
	drained := 0
	for {
		b, err := s.Next(500, 256<<10)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil && len(inFlight) == 0 {
			return drained
		}
		if b != nil {
			drained += len(b.Readings)
			inFlight = append(inFlight, b)
		}
		if len(inFlight) == 4 || b == nil {
			if err := s.Ack(inFlight[0]); err != nil {
				t.Fatal(err)
			}
			inFlight = inFlight[1:]
			if afterAck != nil {
				afterAck()
			}
		}
	}
}

// liveHeap returns the heap the last GC found live.
func liveHeap() uint64 {
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		panic(fmt.Sprintf("runtime/metrics: %s unsupported", m[0].Name))
	}
	return m[0].Value.Uint64()
}

// samplePeak calls sample every interval, in a goroutine of its own,
// until stop, which returns the highest value sampled.
func samplePeak(sample func() uint64, every time.Duration) (stop func() uint64) {
	var peak uint64
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			peak = max(peak, sample())
			select {
			case <-done:
				return
			case <-time.After(every):
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-exited
		return peak
	}
}
