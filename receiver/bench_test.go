package receiver

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
)

// Benchmarks of ingest, in readings per second (the readings/s metric).
// Workload: batches of benchBatch readings of one device and stream, four
// sensors, values at 0.01 resolution, as the sim driver sends them; each
// batch one POST /v1/readings over loopback (token check, decode,
// transaction). Postgres runs with fsync=off: these measure our code, not
// the disk; the same-run raw COPY baseline runs on the same server.

const benchBatch = 500

func benchReadings(seq0 uint64) []reading.Reading {
	rs := make([]reading.Reading, benchBatch)
	for i := range rs {
		s := seq0 + uint64(i)
		rs[i] = reading.Reading{Device: "pi-07", Stream: testStream, Seq: s,
			Sensor: fmt.Sprintf("sim.s%d", s%4), Value: float64(int(s*37)%10000) / 100, Unit: "C",
			Time: t0.Add(time.Duration(s) * 100 * time.Millisecond)}
	}
	return rs
}

func benchBody(seq0 uint64) []byte {
	var buf []byte
	rs := benchReadings(seq0)
	for i := range rs {
		buf = reading.AppendReading(buf, &rs[i])
	}
	return buf
}

func post(b *testing.B, c *http.Client, url string, body []byte) {
	r, _ := http.NewRequest("POST", url+"/v1/readings", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+tokPi07)
	r.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := c.Do(r)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func benchServer(b *testing.B, st Store) *httptest.Server {
	ctx := b.Context()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if err := st.AddDevice(ctx, "pi-07", HashToken(tokPi07), t0); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, Options{}).Handler())
	b.Cleanup(srv.Close)
	return srv
}

// runIngest posts b.N new batches (dup=false) or b.N times an already
// stored batch (dup=true).
func runIngest(b *testing.B, srv *httptest.Server, dup bool) {
	c := srv.Client()
	seq := uint64(1)
	if dup {
		post(b, c, srv.URL, benchBody(seq))
	}
	b.ResetTimer()
	var busy time.Duration
	for i := 0; i < b.N; i++ {
		body := benchBody(seq)
		if !dup {
			seq += benchBatch
		}
		start := time.Now()
		post(b, c, srv.URL, body)
		busy += time.Since(start)
	}
	b.ReportMetric(float64(b.N*benchBatch)/busy.Seconds(), "readings/s")
}

func BenchmarkIngestSQLite(b *testing.B) {
	for _, dup := range []bool{false, true} {
		b.Run(map[bool]string{false: "new", true: "duplicates"}[dup], func(b *testing.B) {
			st, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(st.Close)
			runIngest(b, benchServer(b, st), dup)
		})
	}
}

// BenchmarkIngestPostgres compares HTTP ingest (new and duplicate batches)
// with raw COPY of the same rows into a table with the same keys and
// indexes, on one Postgres server started with fsync=off.
func BenchmarkIngestPostgres(b *testing.B) {
	if testing.Short() {
		b.Skip("needs PostgreSQL")
	}
	pg := testserver.StartPostgres(b, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	n := 0
	open := func(b *testing.B) *Postgres {
		n++
		st, err := OpenPostgres(b.Context(), pg.CreateDatabase(b, fmt.Sprintf("bench%d", n)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		return st
	}
	b.Run("copy-raw", func(b *testing.B) {
		st := open(b)
		if err := st.Migrate(b.Context()); err != nil {
			b.Fatal(err)
		}
		ctx := b.Context()
		if _, err := st.pool.Exec(ctx, `CREATE TABLE readings_raw (LIKE readings INCLUDING ALL)`); err != nil {
			b.Fatal(err)
		}
		cols := []string{"device_id", "stream", "seq", "sensor", "ts", "value", "unit", "labels", "unsynced", "received_at"}
		seq := uint64(1)
		b.ResetTimer()
		var busy time.Duration
		for i := 0; i < b.N; i++ {
			rs := benchReadings(seq)
			seq += benchBatch
			start := time.Now()
			now := time.Now()
			err := pgx.BeginFunc(ctx, st.pool, func(tx pgx.Tx) error {
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"readings_raw"}, cols, pgx.CopyFromSlice(len(rs), func(j int) ([]any, error) {
					r := &rs[j]
					return []any{r.Device, int64(r.Stream), int64(r.Seq), r.Sensor, r.Time, r.Value, r.Unit, nil, r.Unsynced, now}, nil
				}))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			busy += time.Since(start)
		}
		b.ReportMetric(float64(b.N*benchBatch)/busy.Seconds(), "readings/s")
	})
	b.Run("http-new", func(b *testing.B) { runIngest(b, benchServer(b, open(b)), false) })
	b.Run("http-duplicates", func(b *testing.B) { runIngest(b, benchServer(b, open(b)), true) })
}

// BenchmarkIngestMQTT publishes b.N batches of benchBatch readings (QoS 1)
// to one receiver storing into SQLite and waits for every receipt.
func BenchmarkIngestMQTT(b *testing.B) {
	if testing.Short() {
		b.Skip("needs Mosquitto")
	}
	mq := testserver.StartMosquitto(b, testserver.MosquittoOptions{})
	st, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	if err := st.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	m, err := NewServer(st, Options{}).StartMQTT(b.Context(), MQTTOptions{Broker: mq.URL(), ClientID: "bench-receiver"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	receipts := make(chan struct{}, 1<<16)
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("pi-07"))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("device connect: %v", tok.Error())
	}
	b.Cleanup(func() { dev.Disconnect(100) })
	if tok := dev.Subscribe("outpost/pi-07/receipts", 1, func(mqtt.Client, mqtt.Message) { receipts <- struct{}{} }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("device subscribe: %v", tok.Error())
	}
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = benchBody(uint64(i*benchBatch + 1))
	}
	b.ResetTimer()
	start := time.Now()
	for _, body := range bodies {
		dev.Publish("outpost/pi-07/readings", 1, false, body)
	}
	for range b.N {
		select {
		case <-receipts:
		case <-time.After(30 * time.Second):
			b.Fatal("receipt missing after 30s")
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "readings/s")
}
