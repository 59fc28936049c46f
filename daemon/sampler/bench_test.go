package sampler

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/drivers/sim"
	"github.com/outpost-iot/outpost/internal/reading"
)

// countSink counts samples and says when it has seen target of them.
type countSink struct {
	n      atomic.Int64
	target int64
	done   chan struct{}
	once   sync.Once
}

func (s *countSink) Append(context.Context, reading.Reading, time.Duration) (uint64, error) {
	if s.n.Add(1) == s.target {
		s.once.Do(func() { close(s.done) })
	}
	return 0, nil
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func report(b *testing.B, start time.Time, cpu0 time.Duration) {
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "readings/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/reading")
}

// Workload for both: sim sensors of 10000 series each read every 1 ms, the
// sampler's own minimum interval, so that the sampler (not the schedule) is
// the bottleneck. One op is one reading handed to the sink.
const benchSeries = 10000

// BenchmarkSampler runs the whole sampler: 2 sim sensors, each on its own
// goroutine and 1 ms schedule, into a sink that only counts.
func BenchmarkSampler(b *testing.B) {
	sink := &countSink{target: int64(b.N), done: make(chan struct{})}
	s, err := New([]SensorSpec{
		SimSensor("a", time.Millisecond, benchSeries, 1),
		SimSensor("b", time.Millisecond, benchSeries, 2),
	}, sink, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	<-sink.done
	b.StopTimer()
	report(b, start, cpu0)
	cancel()
	<-done
}

// BenchmarkSimDirect is the baseline: the same sim driver called in a loop
// and its values handed to the same sink as samples, with no sampler
// (no goroutines, schedule, clocks, status or names).
func BenchmarkSimDirect(b *testing.B) {
	sink := &countSink{target: -1, done: make(chan struct{})}
	d, err := sim.New("a", sim.Opts{Series: benchSeries, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, benchSeries)
	for i := range names {
		names[i] = "a." + sim.SeriesName(i)
	}
	var vals []sim.Value
	ctx := b.Context()
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for n := 0; n < b.N; {
		vals = d.Read(now, vals[:0])
		for _, v := range vals {
			sink.Append(ctx, reading.Reading{Sensor: names[v.Series], Unit: "C", Value: v.Value, Time: now}, 0)
			if n++; n == b.N {
				break
			}
		}
	}
	b.StopTimer()
	report(b, start, cpu0)
}

// BenchmarkSamplerScheduled is a schedule-bound load, closer to a real
// device: 10 sim sensors of 4 series each read every millisecond (40 000
// readings/s). cpu-ns/reading then includes the timer wake-ups, clock reads
// and status updates that each read costs.
func BenchmarkSamplerScheduled(b *testing.B) {
	sink := &countSink{target: int64(b.N), done: make(chan struct{})}
	var specs []SensorSpec
	for i := range 10 {
		specs = append(specs, SimSensor(fmt.Sprintf("s%d", i), time.Millisecond, 4, uint64(i)))
	}
	s, err := New(specs, sink, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	<-sink.done
	b.StopTimer()
	report(b, start, cpu0)
	cancel()
	<-done
}
