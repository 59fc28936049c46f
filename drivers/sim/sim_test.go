package sim

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func readN(t *testing.T, opts Opts, n int, step time.Duration) [][]Value {
	t.Helper()
	d, err := New("x", opts)
	if err != nil {
		t.Fatalf("New(%+v) error = %v", opts, err)
	}
	out := make([][]Value, n)
	for i := range out {
		out[i] = d.Read(t0.Add(time.Duration(i)*step), nil)
	}
	return out
}

func TestDeterministic(t *testing.T) {
	a := readN(t, Opts{Series: 4, Seed: 7}, 500, time.Second)
	b := readN(t, Opts{Series: 4, Seed: 7}, 500, time.Second)
	c := readN(t, Opts{Series: 4, Seed: 8}, 500, time.Second)
	same, differ := true, false
	for i := range a {
		if len(a[i]) != len(b[i]) {
			same = false
			break
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				same = false
			}
		}
		if len(a[i]) != len(c[i]) || a[i][0] != c[i][0] {
			differ = true
		}
	}
	if !same {
		t.Error("two devices with seed 7 gave different values")
	}
	if !differ {
		t.Error("seeds 7 and 8 gave the same values")
	}
}

func TestRoundedAndOrdered(t *testing.T) {
	for _, r := range readN(t, Opts{Series: 5, Seed: 1}, 1000, time.Minute) {
		prev := -1
		for _, v := range r {
			if v.Series <= prev || v.Series >= 5 {
				t.Fatalf("series out of order or range: %v", r)
			}
			prev = v.Series
			if c := v.Value * 100; math.Abs(c-math.Round(c)) > 1e-6 {
				t.Fatalf("value %v is not rounded to 0.01", v.Value)
			}
			if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
				t.Fatalf("value %v is not finite", v.Value)
			}
		}
	}
}

func TestDailyCycle(t *testing.T) {
	// One read a minute for ten days; series 0 peaks mid-afternoon.
	reads := readN(t, Opts{Series: 1, Seed: 3, SpikeRate: -1, DropoutRate: -1}, 10*24*60, time.Minute)
	var afternoon, night float64
	var na, nn int
	for i, r := range reads {
		switch h := (i / 60) % 24; {
		case h >= 13 && h < 17:
			afternoon += r[0].Value
			na++
		case h >= 1 && h < 5:
			night += r[0].Value
			nn++
		}
	}
	afternoon /= float64(na)
	night /= float64(nn)
	if afternoon-night < 2 {
		t.Errorf("mean afternoon %.2f, mean night %.2f: want a daily cycle of at least 2", afternoon, night)
	}
}

func TestSpikesAndDropouts(t *testing.T) {
	const n = 100000
	var dropouts, spikes int
	reads := readN(t, Opts{Series: 1, Seed: 5, SpikeRate: 0.01, DropoutRate: 0.01}, n, time.Second)
	prev := math.NaN()
	for _, r := range reads {
		if len(r) == 0 {
			dropouts++
			continue
		}
		if !math.IsNaN(prev) && math.Abs(r[0].Value-prev) > 3 {
			spikes++ // a jump away (and back) from the signal
		}
		prev = r[0].Value
	}
	// 1 % of 100000 = 1000; spikes show as a jump out and a jump back.
	if dropouts < 800 || dropouts > 1200 {
		t.Errorf("dropouts = %d of %d; want about 1000", dropouts, n)
	}
	if spikes < 1000 || spikes > 2600 {
		t.Errorf("jumps = %d of %d; want about 2 per spike (~2000)", spikes, n)
	}
	none := readN(t, Opts{Series: 1, Seed: 5, SpikeRate: -1, DropoutRate: -1}, 10000, time.Second)
	for i, r := range none {
		if len(r) != 1 {
			t.Fatalf("read %d has %d values with dropouts off", i, len(r))
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, o := range []Opts{{Series: 0}, {Series: MaxSeries + 1}, {Series: 1, SpikeRate: 2}, {Series: 1, DropoutRate: math.NaN()}} {
		if _, err := New("x", o); err == nil {
			t.Errorf("New(%+v) error = nil; want an error", o)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	d, err := New("bench", Opts{Series: 4, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]Value, 0, 4)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = d.Read(t0.Add(time.Duration(i)*time.Millisecond), buf[:0])
	}
}
