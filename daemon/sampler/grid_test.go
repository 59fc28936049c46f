package sampler

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// gridSensor records when each read starts; read number slow takes 250 ms.
type gridSensor struct {
	reads []time.Time
	slow  int
}

func (s *gridSensor) String() string { return "grid" }
func (s *gridSensor) Close() error   { return nil }
func (s *gridSensor) Read(ctx context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	s.reads = append(s.reads, time.Now())
	if len(s.reads) == s.slow {
		time.Sleep(250 * time.Millisecond)
	}
	return append(dst, reading.Reading{Sensor: "grid.v", Unit: "1", Value: 1}), nil
}

// The ticker that paces reads keeps them on the wall-clock grid, and a
// read that runs past the next slots skips them (no read off the grid
// from a tick kept meanwhile).
func TestReadsStayOnTheGrid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &gridSensor{slow: 5} // the read at 400 ms ends at 650 ms
		spec := SensorSpec{Name: "grid", Driver: "sim", Interval: 100 * time.Millisecond}
		open := func(SensorSpec, *env) (sensor, error) { return dev, nil }
		r := newRunner(spec, open, &env{clock: systemClock{}}, &memSink{}, slog.New(slog.DiscardHandler), time.Second)
		start := time.Now() // synctest starts on a whole second
		ctx, cancel := context.WithTimeout(t.Context(), 2050*time.Millisecond)
		defer cancel()
		r.run(ctx)
		var at []time.Duration
		for _, t := range dev.reads {
			at = append(at, t.Sub(start))
		}
		// Slots 0…2000 ms, but 500 and 600, which the slow read spans.
		if len(at) != 19 {
			t.Fatalf("%d reads at %v; want 19", len(at), at)
		}
		for i, d := range at {
			if d%(100*time.Millisecond) != 0 {
				t.Errorf("read %d at %v: off the 100 ms grid (all: %v)", i, d, at)
			}
			if d == 500*time.Millisecond || d == 600*time.Millisecond {
				t.Errorf("read %d at %v: during the slow read's slots (all: %v)", i, d, at)
			}
		}
	})
}
