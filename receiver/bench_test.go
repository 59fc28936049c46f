package receiver

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver/postgres"
	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
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

// gzipped is body compressed, as devices send it by default.
var benchGzip = gzip.NewWriter(nil) // reused: a new one is ~800 KB of garbage

func gzipped(b *testing.B, body []byte) []byte {
	var buf bytes.Buffer
	zw := benchGzip
	zw.Reset(&buf)
	if _, err := zw.Write(body); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func post(b *testing.B, c *http.Client, url string, body []byte) {
	r, _ := http.NewRequest("POST", url+"/v1/readings", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+tokPi07)
	r.Header.Set("Content-Type", "application/x-ndjson")
	if len(body) > 1 && body[0] == 0x1f && body[1] == 0x8b { // gzip magic
		r.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.Do(r)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func benchServer(b *testing.B, st store.Store) *httptest.Server {
	ctx := b.Context()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if err := st.AddDevice(ctx, "pi-07", store.HashToken(tokPi07), t0); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, Options{}).Handler())
	b.Cleanup(srv.Close)
	return srv
}

// cpuTime is the CPU time (user and system) of this process so far: the
// receiver's handler, its database driver and the HTTP client posting to
// it, not the database server's.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process CPU time spent in posting n readings: the
// steadier figure on a loaded machine, where wall-clock rates swing with
// the load of others.
func reportCPU(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/reading")
}

// runIngest posts b.N new batches, gzipped if gz.
func runIngest(b *testing.B, srv *httptest.Server, gz bool) {
	c := srv.Client()
	seq := uint64(1)
	var busy, cpu time.Duration
	for b.Loop() {
		body := benchBody(seq)
		if gz {
			body = gzipped(b, body)
		}
		seq += benchBatch
		start, cpu0 := time.Now(), cpuTime(b)
		post(b, c, srv.URL, body)
		busy += time.Since(start)
		cpu += cpuTime(b) - cpu0
	}
	b.ReportMetric(float64(b.N*benchBatch)/busy.Seconds(), "readings/s")
	reportCPU(b, b.N*benchBatch, cpu)
}

// BenchmarkIngestSQLite: new batches (plain, and gzipped as devices send
// them), and each batch new then replayed.
func BenchmarkIngestSQLite(b *testing.B) {
	open := func(b *testing.B) *httptest.Server {
		st, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		return benchServer(b, st)
	}
	b.Run("new", func(b *testing.B) { runIngest(b, open(b), false) })
	b.Run("new-gzip", func(b *testing.B) { runIngest(b, open(b), true) })
	b.Run("replay", func(b *testing.B) { runReplay(b, open(b)) })
}

// pgStore is a Postgres store and a pool of the benchmark's own on the
// same database, for the baseline and the checks.
type pgStore struct {
	*postgres.Postgres
	pool *pgxpool.Pool
}

// pgBench starts one Postgres (fsync off) for a benchmark and returns a
// function opening a migrated store on a new database of it.
func pgBench(b *testing.B) func(b *testing.B) *pgStore {
	if testing.Short() {
		b.Skip("needs PostgreSQL")
	}
	pg := testserver.StartPostgres(b, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	n := 0
	return func(b *testing.B) *pgStore {
		n++
		url := pg.CreateDatabase(b, fmt.Sprintf("bench%d", n))
		st, err := postgres.Open(b.Context(), url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		if err := st.Migrate(b.Context()); err != nil {
			b.Fatal(err)
		}
		pool, err := pgxpool.New(b.Context(), url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		return &pgStore{st, pool}
	}
}

// rawCopier is the baseline: COPY of the same rows, one transaction per
// batch, into readings_raw, a table with the keys and indexes of
// readings, in the same database.
type rawCopier struct {
	st  *pgStore
	seq uint64
}

func newRawCopier(b *testing.B, st *pgStore) *rawCopier {
	if _, err := st.pool.Exec(b.Context(), `CREATE TABLE readings_raw (LIKE readings INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	return &rawCopier{st: st, seq: 1}
}

var rawColumns = []string{"device_id", "stream", "seq", "sensor", "ts", "value", "unit", "labels", "unsynced", "received_at"}

// copyBatch copies the next batch and returns how long it took.
func (c *rawCopier) copyBatch(b *testing.B) time.Duration {
	ctx := b.Context()
	rs := benchReadings(c.seq)
	c.seq += benchBatch
	start := time.Now()
	err := pgx.BeginFunc(ctx, c.st.pool, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"readings_raw"}, rawColumns, pgx.CopyFromSlice(len(rs), func(j int) ([]any, error) {
			r := &rs[j]
			return []any{r.Device, int64(r.Stream), int64(r.Seq), r.Sensor, r.Time, r.Value, r.Unit, nil, r.Unsynced, start}, nil
		}))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// reportVsCopy reports the rate of n readings in busy, the baseline's rate
// in base, and the first as a percentage of the second.
func reportVsCopy(b *testing.B, n int, busy, base time.Duration) {
	rate, baseRate := float64(n)/busy.Seconds(), float64(n)/base.Seconds()
	b.ReportMetric(rate, "readings/s")
	b.ReportMetric(baseRate, "copy-readings/s")
	b.ReportMetric(100*rate/baseRate, "%-of-copy")
}

// BenchmarkIngestPostgres measures HTTP ingest into Postgres against the
// raw COPY of the same rows, interleaved batch by batch in the same run
// (so both see the same load): "new" posts new batches; "replay" posts
// each batch twice, new then again (all duplicates), and reports what the
// replay costs against the first post (dup-cost-%).
func BenchmarkIngestPostgres(b *testing.B) {
	open := pgBench(b)
	b.Run("http-new", func(b *testing.B) {
		st := open(b)
		srv, raw := benchServer(b, st), newRawCopier(b, st)
		c := srv.Client()
		seq := uint64(1)
		var busy, base, cpu time.Duration
		for b.Loop() {
			base += raw.copyBatch(b)
			body := benchBody(seq)
			seq += benchBatch
			start, cpu0 := time.Now(), cpuTime(b)
			post(b, c, srv.URL, body)
			busy += time.Since(start)
			cpu += cpuTime(b) - cpu0
		}
		reportVsCopy(b, b.N*benchBatch, busy, base)
		reportCPU(b, b.N*benchBatch, cpu)
	})
	b.Run("http-replay", func(b *testing.B) {
		srv := benchServer(b, open(b))
		runReplay(b, srv)
	})
}

// runReplay posts each batch twice: new, then replayed.
func runReplay(b *testing.B, srv *httptest.Server) {
	c := srv.Client()
	seq := uint64(1)
	var fresh, replay time.Duration
	for b.Loop() {
		body := benchBody(seq)
		seq += benchBatch
		start := time.Now()
		post(b, c, srv.URL, body)
		mid := time.Now()
		post(b, c, srv.URL, body)
		fresh, replay = fresh+mid.Sub(start), replay+time.Since(mid)
	}
	n := float64(b.N * benchBatch)
	b.ReportMetric(n/fresh.Seconds(), "readings/s")
	b.ReportMetric(n/replay.Seconds(), "replay-readings/s")
	b.ReportMetric(100*replay.Seconds()/fresh.Seconds(), "dup-cost-%")
}

// BenchmarkIngestPostgres1M is the long run: 1M readings over HTTP
// in batches of 500 into Postgres (one device, one stream, so the table
// and its index grow to 1M rows), and the raw COPY of the same 1M rows in
// the same run, interleaved batch by batch. It takes a minute or more, so it runs only with
// OUTPOST_BENCH_1M=1 (make bench stays bounded).
func BenchmarkIngestPostgres1M(b *testing.B) {
	if os.Getenv("OUTPOST_BENCH_1M") == "" {
		b.Skip("set OUTPOST_BENCH_1M=1 for the 1M-reading run")
	}
	const total = 1_000_000
	open := pgBench(b)
	for b.Loop() {
		st := open(b)
		srv, raw := benchServer(b, st), newRawCopier(b, st)
		c := srv.Client()
		// Interleaved batch by batch, as in BenchmarkIngestPostgres: run
		// one after the other, each phase saw another load (the machine
		// is shared) and the second a server whose buffers the first had
		// filled with its million rows.
		var busy, base, cpu time.Duration
		for seq := uint64(1); seq <= total; seq += benchBatch {
			base += raw.copyBatch(b)
			body := benchBody(seq)
			start, cpu0 := time.Now(), cpuTime(b)
			post(b, c, srv.URL, body)
			busy += time.Since(start)
			cpu += cpuTime(b) - cpu0
		}
		var n int64
		if err := st.pool.QueryRow(b.Context(), `SELECT count(*) FROM readings`).Scan(&n); err != nil || n != total {
			b.Fatalf("%d readings stored (%v); want %d", n, err, total)
		}
		reportVsCopy(b, total, busy, base)
		reportCPU(b, total, cpu)
	}
}

// BenchmarkIngestMQTT publishes b.N batches of benchBatch readings (QoS 1)
// through the harness Mosquitto to one receiver and waits for every
// receipt: into SQLite, and into Postgres with the raw COPY of the same
// rows measured in the same run as its baseline.
func BenchmarkIngestMQTT(b *testing.B) {
	if testing.Short() {
		b.Skip("needs Mosquitto")
	}
	mq := testserver.StartMosquitto(b, testserver.MosquittoOptions{})
	b.Run("sqlite", func(b *testing.B) {
		st, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		if err := st.Migrate(b.Context()); err != nil {
			b.Fatal(err)
		}
		busy := runMQTT(b, mq, st, "bench-sqlite")
		b.ReportMetric(float64(b.N*benchBatch)/busy.Seconds(), "readings/s")
	})
	open := pgBench(b)
	b.Run("postgres", func(b *testing.B) {
		st := open(b)
		raw := newRawCopier(b, st)
		var base time.Duration
		for range b.N {
			base += raw.copyBatch(b)
		}
		busy := runMQTT(b, mq, st, "bench-postgres")
		reportVsCopy(b, b.N*benchBatch, busy, base)
	})
}

// runMQTT publishes b.N batches as device pi-07 to a receiver on st and
// returns the time until the last receipt.
func runMQTT(b *testing.B, mq *testserver.Mosquitto, st store.Store, clientID string) time.Duration {
	prefix := "bench-" + clientID // a topic space of its own: no stale messages
	// MQTT ingest takes registered devices only.
	if err := st.AddDevice(b.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil && !errors.Is(err, store.ErrDeviceExists) {
		b.Fatal(err)
	}
	m, err := NewServer(st, Options{}).StartMQTT(b.Context(), MQTTOptions{Broker: mq.URL(), ClientID: clientID, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	receipts := make(chan struct{}, 1<<16)
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID(clientID + "-pi-07"))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("device connect: %v", tok.Error())
	}
	defer dev.Disconnect(100)
	if tok := dev.Subscribe(prefix+"/pi-07/receipts", 1, func(mqtt.Client, mqtt.Message) { receipts <- struct{}{} }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("device subscribe: %v", tok.Error())
	}
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = benchBody(uint64(i*benchBatch + 1))
	}
	b.ResetTimer()
	start := time.Now()
	for _, body := range bodies {
		dev.Publish(prefix+"/pi-07/readings", 1, false, body)
	}
	for range b.N {
		select {
		case <-receipts:
		case <-time.After(60 * time.Second):
			b.Fatal("receipt missing after 60s")
		}
	}
	busy := time.Since(start)
	b.StopTimer()
	return busy
}
