package uplink

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
)

// The workload is the sim driver's shape: one device, 4 series named
// demo.s0..s3, values at 0.01 resolution from a slow random walk, unit C,
// readings 100 ms apart. ns/op and B/op are per reading.

func simBatch(n int, start uint64) *reading.Batch {
	b := &reading.Batch{Stream: 0x9f3c2a71d04b88e1, From: start, To: start + uint64(n) - 1, Readings: make([]reading.Reading, n)}
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	v := [4]float64{21.5, 48.2, 1013.2, 3.3}
	for i := range b.Readings {
		s := int(start+uint64(i)) % 4
		v[s] += float64((int(start)+i*7919)%7-3) / 100
		b.Readings[i] = reading.Reading{Device: "pi-07", Stream: 0x9f3c2a71d04b88e1, Seq: start + uint64(i),
			Sensor: fmt.Sprintf("demo.s%d", s), Value: float64(int(v[s]*100)) / 100, Unit: "C",
			Time: t0.Add(time.Duration(start+uint64(i)) * 100 * time.Millisecond)}
	}
	return b
}

// BenchmarkWireBytes reports the bytes on the wire per reading at batch
// 500, gzip on and off.
func BenchmarkWireBytes(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			batch := simBatch(500, 1)
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if _, ok := encodeBatch(&buf, batch, gz); !ok {
					b.Fatal("encode failed")
				}
			}
			b.ReportMetric(float64(buf.Len())/500, "wireB/reading")
			b.ReportMetric(float64(b.N)*500/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

// sink answers a batch as an Outpost receiver would, after reading (and
// gunzipping) the whole body and counting its lines.
func sink() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		n := 0
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(`"dropped"`)) {
				n++
			}
		}
		fmt.Fprintf(w, `{"accepted":%d,"duplicates":0,"conflicts":0}`, n)
	})
}

// BenchmarkDrainHTTP drains batches of 500 through the Drainer and the
// HTTP sender to a loopback sink; BenchmarkRawPostHTTP is the same-run
// baseline: the same bodies, pre-encoded, posted in a plain loop.
func BenchmarkDrainHTTP(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			srv := httptest.NewServer(sink())
			defer srv.Close()
			h, err := NewHTTP(HTTPOptions{URL: srv.URL, NoGzip: !gz, InFlight: 4})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			drainBench(b, h)
		})
	}
}

// drainBench drains b.N readings in batches of 500 through s, 4 in flight,
// and reports readings/s.
func drainBench(b *testing.B, s Sender) {
	o := newBenchOutbox(b.N)
	d := &Drainer{Outbox: o, Sender: s, MaxReadings: 500, InFlight: 4}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	<-o.done
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}

func BenchmarkRawPostHTTP(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			srv := httptest.NewServer(sink())
			defer srv.Close()
			var buf bytes.Buffer
			encodeBatch(&buf, simBatch(500, 1), gz)
			body := buf.Bytes()
			client := srv.Client()
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += 500 {
				req, _ := http.NewRequest("POST", srv.URL+"/v1/readings", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-ndjson")
				if gz {
					req.Header.Set("Content-Encoding", "gzip")
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

// benchOutbox hands out b.N sim readings in batches and closes done when
// all are acknowledged.
// The readings are made once, so the benchmark measures the uplink, not
// the making of readings (the spool's read side has its own benchmark).
type benchOutbox struct {
	mu                sync.Mutex
	next, acked, left int
	template          *reading.Batch
	committed         chan struct{}
	done              chan struct{}
}

func newBenchOutbox(n int) *benchOutbox {
	return &benchOutbox{left: n, template: simBatch(500, 1), committed: make(chan struct{}), done: make(chan struct{})}
}

func (o *benchOutbox) Next(max, _ int) (*reading.Batch, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(max, o.left-o.next)
	if n <= 0 {
		return nil, nil
	}
	b := &reading.Batch{Stream: o.template.Stream, From: uint64(o.next + 1), To: uint64(o.next + n),
		Readings: append([]reading.Reading(nil), o.template.Readings[:n]...)}
	for i := range b.Readings {
		b.Readings[i].Seq = uint64(o.next + i + 1)
	}
	o.next += n
	return b, nil
}

func (o *benchOutbox) Ack(b *reading.Batch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.acked += len(b.Readings)
	if o.acked == o.left {
		close(o.done)
	}
	return nil
}

func (o *benchOutbox) DeadLetter(context.Context, *reading.Batch, string) error {
	panic("unexpected dead letter")
}
func (o *benchOutbox) Committed() <-chan struct{} { return o.committed }

// BenchmarkDrainMQTT drains batches of 500 through the Drainer and the
// MQTT sender to the harness Mosquitto, confirmed by PUBACK (confirm:
// broker: this measures the transport; receipts add the receiver's commit).
func BenchmarkDrainMQTT(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			broker := testserver.StartMosquitto(b, testserver.MosquittoOptions{})
			m, err := NewMQTT(MQTTOptions{Broker: broker.URL(), Device: "pi-bench", ConfirmBroker: true, Gzip: gz})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			for deadline := time.Now().Add(10 * time.Second); !m.client.IsConnectionOpen(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("not connected")
				}
			}
			b.ResetTimer()
			drainBench(b, m)
		})
	}
}
