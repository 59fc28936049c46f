package uplink

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
)

// spoolOutbox is the real spool, which the drain loop takes as it is (as
// the daemon wires it), counting acknowledged readings: it closes done once
// want are acknowledged.
type spoolOutbox struct {
	*spool.Spool
	want  int64
	acked atomic.Int64
	done  chan struct{}
	once  sync.Once
}

func newSpoolOutbox(sp *spool.Spool, want int) *spoolOutbox {
	return &spoolOutbox{Spool: sp, want: int64(want), done: make(chan struct{})}
}

func (o *spoolOutbox) Ack(b *reading.Batch) error {
	if err := o.Spool.Ack(b); err != nil {
		return err
	}
	if o.acked.Add(int64(len(b.Readings))) >= o.want {
		o.once.Do(func() { close(o.done) })
	}
	return nil
}

// simReadings calls fn with n readings shaped like the sim driver's: 4
// series demo.s0..s3 (unit C), each a slow deterministic random walk with
// values at 0.01 resolution, one reading per 100 ms, boot clock known (its
// boot time in simBoot).
func simReadings(n int, fn func(r reading.Reading, bootTime time.Duration) error) error {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	sensors := [4]string{"demo.s0", "demo.s1", "demo.s2", "demo.s3"}
	v := [4]int64{2150, 4820, 101320, 330} // hundredths
	for i := range n {
		s := i % 4
		v[s] += int64((i*7919)%7 - 3)
		d := time.Duration(i) * 100 * time.Millisecond
		r := reading.Reading{Sensor: sensors[s], Value: float64(v[s]) / 100, Unit: "C", Time: t0.Add(d)}
		if err := fn(r, 30*time.Second+d); err != nil {
			return err
		}
	}
	return nil
}

// simBoot is the boot of simReadings' boot times.
var simBoot = spool.BootID{0x5e, 0x11, 0x0c, 0x42, 0x9b, 0x1c, 0x4d, 0x2e, 0x8f, 0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc}

// fillSpool creates a spool at path holding n sim readings, committed in
// batches of 100k and unsynced (only the result matters), and closes it.
func fillSpool(tb testing.TB, path, device string, n int) {
	tb.Helper()
	sp, err := spool.Open(spool.Options{Path: path, Device: device, Boot: simBoot, CommitInterval: time.Hour,
		CommitReadings: 100_000, MaxBufferedReadings: 100_000, UnsafeNoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	err = simReadings(n, func(r reading.Reading, bootTime time.Duration) error {
		_, err := sp.Append(ctx, r, bootTime)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := sp.Close(ctx); err != nil {
		tb.Fatal(err)
	}
}
