package reading

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// The benchmark workload is what the sim driver produces: one device, four
// series, values at 0.01 resolution, a unit, no labels, 100 ms apart. Each
// op is one reading, so ns/op and allocs/op are per reading. The
// encoding/json benchmarks are the baseline measured in the same run.

func simReadings(n int) []Reading {
	rs := make([]Reading, n)
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range rs {
		rs[i] = Reading{
			Device: "pi-07", Stream: 0x9f3c2a71d04b88e1, Seq: uint64(i + 1),
			Sensor: [...]string{"demo.s0", "demo.s1", "demo.s2", "demo.s3"}[i%4],
			Value:  float64(2000+(i*37)%1500) / 100, Unit: "C",
			Time: t0.Add(time.Duration(i) * 100 * time.Millisecond),
		}
	}
	return rs
}

// reportRate adds readings/s and, when known, the wire size of a reading.
func reportRate(b *testing.B, wireBytes int) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
	if wireBytes > 0 {
		b.ReportMetric(float64(wireBytes), "wireB/reading")
	}
}

func BenchmarkEncode(b *testing.B) {
	rs := simReadings(4096)
	enc := NewEncoder(io.Discard)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := enc.Reading(&rs[i%len(rs)]); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, len(AppendReading(nil, &rs[0])))
}

func batch(rs []Reading) []byte {
	var buf []byte
	for i := range rs {
		buf = AppendReading(buf, &rs[i])
	}
	return buf
}

func BenchmarkDecode(b *testing.B) {
	body := batch(simReadings(4096))
	r := bytes.NewReader(body)
	dec := NewDecoder(r, Limits{})
	var l Line
	b.ReportAllocs()
	b.SetBytes(int64(len(body) / 4096))
	for b.Loop() {
		err := dec.Decode(&l)
		if err == io.EOF {
			r.Reset(body)
			dec = NewDecoder(r, Limits{})
			err = dec.Decode(&l)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, 0)
}

// jsonReading is the same line described for encoding/json: the baseline.
type jsonReading struct {
	Device    string            `json:"device"`
	Stream    string            `json:"stream"`
	Seq       uint64            `json:"seq"`
	Sensor    string            `json:"sensor"`
	Value     float64           `json:"value"`
	Unit      string            `json:"unit,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Timestamp time.Time         `json:"timestamp"`
	Clock     string            `json:"clock,omitempty"`
}

func toJSON(r *Reading) jsonReading {
	return jsonReading{Device: r.Device, Stream: r.Stream.String(), Seq: r.Seq, Sensor: r.Sensor,
		Value: r.Value, Unit: r.Unit, Labels: r.Labels, Timestamp: r.Time}
}

func BenchmarkBaselineEncodingJSONEncode(b *testing.B) {
	rs := simReadings(4096)
	enc := json.NewEncoder(io.Discard)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := enc.Encode(toJSON(&rs[i%len(rs)])); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, 0)
}

func BenchmarkBaselineEncodingJSONDecode(b *testing.B) {
	rs := simReadings(4096)
	lines := bytes.Split(batch(rs), []byte{'\n'})
	var jr jsonReading
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := json.Unmarshal(lines[i%len(rs)], &jr); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, 0)
}
