package spool

import (
	"math"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func TestStoredRoundTrip(t *testing.T) {
	cases := []stored{
		{series: 0, time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), value: 21.37},
		{series: 3, time: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC), value: -0.5, unsynced: true},
		{series: 1 << 20, time: time.Unix(0, 1).UTC(), value: 1.0 / 3},
		{series: 7, time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), value: math.Copysign(0, -1)},
		{series: 7, time: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), value: 1e300, hasBoot: true, boot: 2, bootTime: 36 * time.Hour},
		{series: 2, time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), value: -9007199254740993, hasBoot: true},
	}
	for _, c := range cases {
		b := appendStored(nil, &c)
		got, err := decodeStored(b)
		if err != nil {
			t.Fatalf("decodeStored(appendStored(%+v)) error = %v", c, err)
		}
		if got.series != c.series || !got.time.Equal(c.time) || math.Float64bits(got.value) != math.Float64bits(c.value) ||
			got.unsynced != c.unsynced || got.hasBoot != c.hasBoot || got.boot != c.boot || got.bootTime != c.bootTime {
			t.Errorf("round trip of %+v = %+v", c, got)
		}
	}
	typical := stored{series: 3, time: time.Date(2026, 11, 25, 10, 0, 0, 100_000_000, time.UTC), value: 21.37, hasBoot: true, bootTime: 36 * time.Hour}
	if n := len(appendStored(nil, &typical)); n > 22 {
		t.Errorf("a typical reading takes %d bytes; want ≤ 22", n)
	}
}

func TestSeriesKeyIgnoresLabelOrder(t *testing.T) {
	a := reading.Reading{Sensor: "s", Unit: "C", Labels: map[string]string{"a": "1", "b": "2", "c": "3"}}
	first := string(appendSeriesKey(nil, &a))
	for range 20 { // map iteration order varies
		b := reading.Reading{Sensor: "s", Unit: "C", Labels: map[string]string{"c": "3", "b": "2", "a": "1"}}
		if got := string(appendSeriesKey(nil, &b)); got != first {
			t.Fatalf("series key %q; want %q: it depends on map order", got, first)
		}
	}
	s, err := decodeSeries(appendSeriesKey(nil, &a))
	if err != nil || s.sensor != "s" || s.unit != "C" || len(s.labels) != 3 || s.labels["b"] != "2" {
		t.Errorf("decodeSeries() = %+v, %v", s, err)
	}
}

// FuzzDecode feeds arbitrary bytes, as a corrupt page would, to every
// decoder of stored data: they return an error, never panic, and what
// decodes re-encodes to the same reading.
func FuzzDecode(f *testing.F) {
	f.Add(appendStored(nil, &stored{series: 3, time: time.Unix(1700000000, 5).UTC(), value: 21.37, hasBoot: true, boot: 1, bootTime: time.Hour}))
	f.Add([]byte{kindRaw, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(appendSeriesKey(nil, &reading.Reading{Sensor: "x", Unit: "C", Labels: map[string]string{"k": "v"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decodeStored(b); err == nil {
			again, err := decodeStored(appendStored(nil, &s))
			if err != nil || again.series != s.series || !again.time.Equal(s.time) ||
				math.Float64bits(again.value) != math.Float64bits(s.value) && !math.IsNaN(s.value) {
				t.Fatalf("re-encoding %+v gives %+v, %v", s, again, err)
			}
		}
		_, _ = decodeSeries(b)
		_, _ = decodeBootRec(b)
		if len(b) >= 16 {
			_, _, _ = decodeDead(b[:16], b[16:])
		}
	})
}
