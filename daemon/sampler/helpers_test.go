package sampler

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/internal/reading"
)

// sample is a reading as the sink got it, with its boot time.
type sample struct {
	reading.Reading
	BootTime time.Duration
}

// memSink keeps every sample.
type memSink struct {
	mu      sync.Mutex
	samples []sample
	err     error // returned by Append when set
}

func (s *memSink) Append(_ context.Context, r reading.Reading, bootTime time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	s.samples = append(s.samples, sample{r, bootTime})
	return uint64(len(s.samples)), nil
}

func (s *memSink) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// bySensor counts the samples of each sample name.
func (s *memSink) bySensor() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for _, x := range s.samples {
		m[x.Sensor]++
	}
	return m
}

// logCounter is a slog.Handler that counts records by sensor and message.
type logCounter struct {
	mu    *sync.Mutex
	count map[[2]string]int
	attrs []slog.Attr
}

func newLogCounter() *logCounter {
	return &logCounter{mu: &sync.Mutex{}, count: map[[2]string]int{}}
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	sensor := ""
	for _, a := range h.attrs {
		if a.Key == "sensor" {
			sensor = a.Value.String()
		}
	}
	h.mu.Lock()
	h.count[[2]string{sensor, r.Message}]++
	h.mu.Unlock()
	return nil
}

func (h *logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *logCounter) WithGroup(string) slog.Handler { return h }

func (h *logCounter) get(sensor, msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count[[2]string{sensor, msg}]
}

// total counts the records of one sensor.
func (h *logCounter) total(sensor string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for k, v := range h.count {
		if k[0] == sensor {
			n += v
		}
	}
	return n
}

// specs decodes a YAML sensors list.
func specs(t testing.TB, src string) []SensorSpec {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	s, err := decodeNode(&n)
	if err != nil {
		t.Fatalf("DecodeSensors error = %v", err)
	}
	return s
}
