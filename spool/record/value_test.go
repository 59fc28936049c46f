package record

import (
	"math"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func TestStoredRoundTrip(t *testing.T) {
	cases := []Stored{
		{Series: 0, Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Value: 21.37},
		{Series: 3, Time: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC), Value: -0.5, Unsynced: true},
		{Series: 1 << 20, Time: time.Unix(0, 1).UTC(), Value: 1.0 / 3},
		{Series: 7, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Value: math.Copysign(0, -1)},
		{Series: 7, Time: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Value: 1e300, HasBoot: true, Boot: 2, BootTime: 36 * time.Hour},
		{Series: 2, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Value: -9007199254740993, HasBoot: true},
	}
	for _, c := range cases {
		b := AppendStored(nil, &c)
		got, err := DecodeStored(b)
		if err != nil {
			t.Fatalf("DecodeStored(AppendStored(%+v)) error = %v", c, err)
		}
		if got.Series != c.Series || !got.Time.Equal(c.Time) || math.Float64bits(got.Value) != math.Float64bits(c.Value) ||
			got.Unsynced != c.Unsynced || got.HasBoot != c.HasBoot || got.Boot != c.Boot || got.BootTime != c.BootTime {
			t.Errorf("round trip of %+v = %+v", c, got)
		}
	}
	typical := Stored{Series: 3, Time: time.Date(2026, 11, 25, 10, 0, 0, 100_000_000, time.UTC), Value: 21.37, HasBoot: true, BootTime: 36 * time.Hour}
	if n := len(AppendStored(nil, &typical)); n > 22 {
		t.Errorf("a typical reading takes %d bytes; want ≤ 22", n)
	}
}

func TestSeriesKeyIgnoresLabelOrder(t *testing.T) {
	a := reading.Reading{Sensor: "s", Unit: "C", Labels: map[string]string{"a": "1", "b": "2", "c": "3"}}
	first := string(AppendSeriesKey(nil, &a))
	for range 20 { // map iteration order varies
		b := reading.Reading{Sensor: "s", Unit: "C", Labels: map[string]string{"c": "3", "b": "2", "a": "1"}}
		if got := string(AppendSeriesKey(nil, &b)); got != first {
			t.Fatalf("series key %q; want %q: it depends on map order", got, first)
		}
	}
	s, err := DecodeSeries(AppendSeriesKey(nil, &a))
	if err != nil || s.Sensor != "s" || s.Unit != "C" || len(s.Labels) != 3 || s.Labels["b"] != "2" {
		t.Errorf("DecodeSeries() = %+v, %v", s, err)
	}
}

// FuzzDecode feeds arbitrary bytes, as a corrupt page would, to every
// decoder of stored data: they return an error, never panic, and what
// decodes re-encodes to the same reading.
func FuzzDecode(f *testing.F) {
	f.Add(AppendStored(nil, &Stored{Series: 3, Time: time.Unix(1700000000, 5).UTC(), Value: 21.37, HasBoot: true, Boot: 1, BootTime: time.Hour}))
	f.Add([]byte{KindRaw, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(AppendSeriesKey(nil, &reading.Reading{Sensor: "x", Unit: "C", Labels: map[string]string{"k": "v"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := DecodeStored(b); err == nil {
			again, err := DecodeStored(AppendStored(nil, &s))
			if err != nil || again.Series != s.Series || !again.Time.Equal(s.Time) ||
				math.Float64bits(again.Value) != math.Float64bits(s.Value) && !math.IsNaN(s.Value) {
				t.Fatalf("re-encoding %+v gives %+v, %v", s, again, err)
			}
		}
		_, _ = DecodeSeries(b)
		_, _ = DecodeBoot(b)
		if len(b) >= 16 {
			_, _, _ = DecodeDead(b[:16], b[16:])
		}
	})
}
