package uplink

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/spool"
)

// The spool drain benchmark drains a real spool file, pre-filled with sim
// readings (simReadings: 4 series, values at 0.01 resolution), through the
// Drainer (batches of 500, 4 in flight, the daemon's 1 s commits) and a
// sender, in a fresh process per drain, so that the process's anonymous
// memory (RssAnon) and Go heap describe the drain alone. The peer (HTTP
// sink, receipt stand-in) runs in the benchmark's own process; Mosquitto
// in its own.
//
// The big backlog is drainReadingsEnv readings (default 1M); the small one
// is 100k, so that the two give the memory ratio.

const (
	// drainReadingsEnv sets the big backlog's size (default 1000000).
	drainReadingsEnv = "OUTPOST_BENCH_DRAIN_READINGS"
	// drainJobEnv carries a drainJob (JSON) to TestHelperDrainSpool.
	drainJobEnv = "OUTPOST_UPLINK_DRAIN_JOB"
	// drainProfileEnv, when set to a path prefix, makes each drain
	// process write a CPU profile of its drain to PREFIX-MODE-N.cpu, a
	// heap profile at its peak live heap to PREFIX-MODE-N.heap and one
	// once drained to PREFIX-MODE-N-drained.heap (sampling every 4 KiB
	// allocated), for go tool pprof.
	drainProfileEnv = "OUTPOST_BENCH_DRAIN_PROFILE"
	benchDevice     = "pi-bench"
	smallDrain      = 100_000
)

// filled caches the pre-filled spool files of one benchmark process, by
// size; TestMain removes them.
var filled struct {
	sync.Mutex
	dir   string
	paths map[int]string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if filled.dir != "" {
		os.RemoveAll(filled.dir)
	}
	os.Exit(code)
}

// filledSpool returns a closed spool file holding n sim readings, made on
// first use in this process.
func filledSpool(b *testing.B, n int) string {
	filled.Lock()
	defer filled.Unlock()
	if p, ok := filled.paths[n]; ok {
		return p
	}
	if filled.dir == "" {
		d, err := os.MkdirTemp("", "outpost-uplink-bench-")
		if err != nil {
			b.Fatal(err)
		}
		filled.dir, filled.paths = d, map[int]string{}
	}
	dir := filepath.Join(filled.dir, strconv.Itoa(n))
	if err := os.Mkdir(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	path := filepath.Join(dir, "spool.db")
	fillSpool(b, path, benchDevice, n)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("filled a spool of %d readings in %v (%.1f MB)", n, time.Since(start).Round(time.Millisecond), float64(fi.Size())/1e6)
	filled.paths[n] = path
	return path
}

func drainSizes(b *testing.B) []int {
	big := 1_000_000
	if v := os.Getenv(drainReadingsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("%s=%q: want a whole number of at least 1000", drainReadingsEnv, v)
		}
		big = n
	}
	if big <= smallDrain {
		return []int{big}
	}
	return []int{smallDrain, big}
}

func sizeName(n int) string {
	switch {
	case n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

// BenchmarkDrainSpool drains a pre-filled spool of 100k and of 1M
// readings (see drainReadingsEnv) over HTTP to a loopback sink that reads
// the body and answers 200, and over MQTT to the harness Mosquitto,
// confirmed by PUBACK (mqtt-broker) or by a receipt stand-in's receipts
// (mqtt-receiver). One op is one whole drain, in a fresh process. Metrics:
// readings/s (from the first Next to the last acknowledgement), wireB/reading
// (bytes the peer received: HTTP request lines, headers and bodies; MQTT
// packets as Mosquitto counts them in $SYS/broker/bytes/received),
// peak-anon-KiB and peak-heap-KiB (RssAnon of /proc/self/status and Go heap
// in use, sampled every 5 ms during the drain and its last commit),
// peak-live-KiB (the largest live heap a GC found then: the heap in use
// peaks near twice it, at GOGC=100),
// cpu-ns/reading (the drain process's user and system CPU time: steadier
// than readings/s on a shared machine), opened-anon-KiB (RssAnon with the
// spool open, before the drain). raw-post is the same-run
// baseline: the sink's rate for pre-encoded bodies of 500 readings posted
// 4 at a time.
func BenchmarkDrainSpool(b *testing.B) {
	sizes := drainSizes(b)
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("raw-post/gzip=%v", gz), func(b *testing.B) { benchRawPost(b, gz, sizes[len(sizes)-1]) })
	}
	for _, v := range drainVariants {
		for _, n := range sizes {
			if v.smallOnly && n > smallDrain && len(sizes) > 1 {
				continue
			}
			b.Run(fmt.Sprintf("%s/readings=%s", v.name, sizeName(n)), func(b *testing.B) {
				benchDrainSpool(b, v, n)
			})
		}
	}
}

// drainVariants are the senders and settings BenchmarkDrainSpool drains with.
var drainVariants = []drainVariant{
	// The spool's own ceiling: the same drain, every batch accepted at
	// once without being encoded or sent.
	{name: "null", mode: "null"},
	{name: "http/gzip=false", mode: "http"},
	{name: "http/gzip=true", mode: "http", gzip: true},
	{name: "mqtt-broker/gzip=false", mode: "mqtt-broker"},
	{name: "mqtt-broker/gzip=true", mode: "mqtt-broker", gzip: true},
	// Mosquitto's default, set_tcp_nodelay false, leaves Nagle's
	// algorithm on the broker's sockets: a confirm: receiver drain then
	// makes about one round of 4 batches per 40–50 ms (a delayed-ACK
	// period), whatever the link. set_tcp_nodelay true removes the wait.
	{name: "mqtt-receiver/gzip=true/broker-nodelay=true", mode: "mqtt-receiver", gzip: true, brokerConf: "set_tcp_nodelay true"},
	{name: "mqtt-receiver/gzip=true/broker-nodelay=false", mode: "mqtt-receiver", gzip: true, smallOnly: true},
}

type drainVariant struct {
	name       string
	mode       string // null, http, mqtt-broker (confirm: broker), mqtt-receiver (confirm: receiver)
	gzip       bool
	brokerConf string // mosquitto.conf lines
	smallOnly  bool   // only the 100k backlog (slow)
}

// drainJob is what the drain process is asked to do.
type drainJob struct {
	Spool  string // the spool file to drain
	Mode   string // null, http, mqtt-broker, mqtt-receiver
	Target string // the sink's or the broker's URL
	Gzip   bool
	N      int // readings the spool holds
}

// drainResult is what the drain process measured.
type drainResult struct {
	Drained       int
	Seconds       float64
	OpenedAnonKiB uint64
	PeakAnonKiB   uint64
	PeakHeapKiB   uint64
	PeakLiveKiB   uint64
	CPUSeconds    float64 // user and system CPU time of the drain process, drain and last commit
	OpenSeconds   float64 // spool.Open
	FlushSeconds  float64 // the commit after the last acknowledgement
	CloseSeconds  float64 // spool.Close
}

const drainResultPrefix = "drain-result: "

func benchDrainSpool(b *testing.B, v drainVariant, n int) {
	b.StopTimer() // ns/op is the drain process alone
	src := filledSpool(b, n)
	job := drainJob{Mode: v.mode, Gzip: v.gzip, N: n}
	var received func(settle bool) int64 // bytes the peer has received
	switch v.mode {
	case "null":
	case "http":
		sink := &wireSink{}
		srv := sink.start()
		defer srv.Close()
		job.Target = srv.URL
		received = func(bool) int64 { return sink.received.Load() }
	case "mqtt-broker", "mqtt-receiver":
		broker := testserver.StartMosquitto(b, testserver.MosquittoOptions{Config: "sys_interval 1\n" + v.brokerConf})
		job.Target = broker.URL()
		received = watchBrokerBytes(b, broker)
		if v.mode == "mqtt-receiver" {
			startBenchReceipts(b, broker)
			received = nil // receipts flow into the broker too: not the device's bytes
		}
	default:
		b.Fatalf("unknown mode %q", v.mode)
	}
	var sum drainResult
	var wire int64
	for i := range b.N {
		job.Spool = filepath.Join(b.TempDir(), "spool.db")
		copyFile(b, src, job.Spool)
		var before int64
		if i == 0 && received != nil {
			before = received(false)
		}
		b.StartTimer()
		res := runDrain(b, job)
		b.StopTimer()
		if i == 0 && received != nil {
			wire = received(true) - before
		}
		os.Remove(job.Spool)
		sum.Seconds += res.Seconds
		sum.OpenedAnonKiB += res.OpenedAnonKiB
		sum.PeakAnonKiB += res.PeakAnonKiB
		sum.PeakHeapKiB += res.PeakHeapKiB
		sum.PeakLiveKiB += res.PeakLiveKiB
		sum.CPUSeconds += res.CPUSeconds
		b.Logf("drain %d: open %.2fs, drain %.2fs, last commit %.2fs, close %.2fs", i, res.OpenSeconds, res.Seconds, res.FlushSeconds, res.CloseSeconds)
	}
	runs := float64(b.N)
	b.ReportMetric(float64(n)*runs/sum.Seconds, "readings/s")
	b.ReportMetric(sum.CPUSeconds*1e9/(float64(n)*runs), "cpu-ns/reading")
	b.ReportMetric(float64(sum.PeakAnonKiB)/runs, "peak-anon-KiB")
	b.ReportMetric(float64(sum.PeakHeapKiB)/runs, "peak-heap-KiB")
	b.ReportMetric(float64(sum.PeakLiveKiB)/runs, "peak-live-KiB")
	b.ReportMetric(float64(sum.OpenedAnonKiB)/runs, "opened-anon-KiB")
	if received != nil {
		b.ReportMetric(float64(wire)/float64(n), "wireB/reading")
	}
}

// runDrain runs one drain in a fresh process of this test binary.
func runDrain(b *testing.B, job drainJob) drainResult {
	raw, _ := json.Marshal(job)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDrainSpool$", "-test.count=1")
	cmd.Env = append(os.Environ(), drainJobEnv+"="+string(raw))
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("drain process: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, drainResultPrefix); ok {
			var res drainResult
			if err := json.Unmarshal([]byte(v), &res); err != nil {
				b.Fatalf("drain process result %q: %v", v, err)
			}
			if res.Drained != job.N {
				b.Fatalf("drain process drained %d of %d readings:\n%s", res.Drained, job.N, out)
			}
			return res
		}
	}
	b.Fatalf("drain process printed no result:\n%s", out)
	return drainResult{}
}

// TestHelperDrainSpool is BenchmarkDrainSpool's drain process, not a test.
func TestHelperDrainSpool(t *testing.T) {
	raw := os.Getenv(drainJobEnv)
	if raw == "" {
		t.Skip("the drain process of BenchmarkDrainSpool")
	}
	var job drainJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		t.Fatalf("%s: %v", drainJobEnv, err)
	}
	if os.Getenv(drainProfileEnv) != "" {
		runtime.MemProfileRate = 4096
	}
	ctx := context.Background()
	t0 := time.Now()
	sp, err := spool.Open(spool.Options{Path: job.Spool, Device: benchDevice, CommitInterval: spool.DefaultCommitInterval})
	if err != nil {
		t.Fatal(err)
	}
	openSecs := time.Since(t0).Seconds()
	if st, err := sp.Stats(); err != nil || st.Readings != uint64(job.N) {
		t.Fatalf("spool holds %d readings (%v); want %d", st.Readings, err, job.N)
	}
	var s Sender
	switch job.Mode {
	case "null":
		s = acceptAll{}
	case "http":
		h, err := NewHTTP(HTTPOptions{URL: job.Target, NoGzip: !job.Gzip, InFlight: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		s = h
	default:
		m, err := NewMQTT(MQTTOptions{Broker: job.Target, Device: benchDevice, ConfirmBroker: job.Mode == "mqtt-broker",
			Gzip: job.Gzip, ReceiptTimeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		waitConnected(t, m)
		s = m
	}
	runtime.GC()
	opened := rssAnonKiB()
	prof := os.Getenv(drainProfileEnv)
	if prof != "" {
		prof = fmt.Sprintf("%s-%s-%d", prof, job.Mode, job.N)
		if job.Gzip {
			prof += "-gzip"
		}
		stop := startCPUProfile(t, prof+".cpu")
		defer stop()
	}
	mem := sampleMemory(5*time.Millisecond, prof)
	cpu0 := cpuTime(t)
	o := newSpoolOutbox(sp, job.N)
	runCtx, cancel := context.WithCancel(ctx)
	d := &Drainer{Outbox: o, Sender: s, MaxReadings: 500, InFlight: 4}
	done := make(chan struct{})
	start := time.Now()
	go func() { d.Run(runCtx); close(done) }()
	select {
	case <-o.done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("drained %d of %d readings in 5 minutes: %+v", o.acked.Load(), job.N, d.Status())
	}
	secs := time.Since(start).Seconds()
	cancel()
	<-done
	// The drain is over once the deletions are committed: sample through
	// the last commit too.
	t0 = time.Now()
	if err := sp.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	flushSecs := time.Since(t0).Seconds()
	cpu := cpuTime(t) - cpu0
	peakAnon, peakHeap, peakLive := mem.stop()
	if prof != "" { // what the drained spool keeps
		runtime.GC()
		writeHeapProfile(prof + "-drained.heap")
	}
	if st, err := sp.Stats(); err != nil || st.Readings != 0 {
		t.Fatalf("after the drain the spool holds %d readings (%v); want 0", st.Readings, err)
	}
	t0 = time.Now()
	if err := sp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	res, _ := json.Marshal(drainResult{Drained: int(o.acked.Load()), Seconds: secs,
		OpenedAnonKiB: opened, PeakAnonKiB: peakAnon, PeakHeapKiB: peakHeap, PeakLiveKiB: peakLive,
		CPUSeconds: cpu.Seconds(), OpenSeconds: openSecs, FlushSeconds: flushSecs, CloseSeconds: time.Since(t0).Seconds()})
	fmt.Printf("%s%s\n", drainResultPrefix, res)
}

// cpuTime returns the user and system CPU time this process used so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// acceptAll accepts every batch at once.
type acceptAll struct{}

func (acceptAll) Send(_ context.Context, b *reading.Batch) Result {
	return Result{Outcome: Accepted, Counts: Counts{Accepted: len(b.Readings)}}
}

// rssAnonKiB returns RssAnon of /proc/self/status in KiB (0 if unknown).
func rssAnonKiB() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// startCPUProfile writes a CPU profile to path until the returned
// function is called.
func startCPUProfile(t *testing.T, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}
}

// writeHeapProfile writes the heap profile (as of the last GC) to path.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("heap").WriteTo(f, 0)
}

// memSampler records the peak RssAnon and Go heap in use (objects plus
// unused space in in-use spans: MemStats.HeapInuse, read without stopping
// the world).
type memSampler struct {
	stopc            chan struct{}
	done             chan struct{}
	anon, heap, live uint64
}

// sampleMemory starts sampling every interval; with a profile path
// prefix, it writes a heap profile to PREFIX.heap whenever the live heap
// (as the last GC found it) passes its previous peak by 5%.
func sampleMemory(every time.Duration, prof string) *memSampler {
	m := &memSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(every)
	go func() {
		defer close(m.done)
		defer t.Stop()
		var profiled uint64
		for {
			metrics.Read(samples)
			heap := (samples[0].Value.Uint64() + samples[1].Value.Uint64()) >> 10
			m.heap = max(m.heap, heap)
			m.anon = max(m.anon, rssAnonKiB())
			live := samples[2].Value.Uint64() >> 10
			m.live = max(m.live, live)
			if prof != "" && live > profiled+profiled/20 {
				profiled = live
				writeHeapProfile(prof + ".heap")
			}
			select {
			case <-m.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memSampler) stop() (anonKiB, heapKiB, liveKiB uint64) {
	close(m.stopc)
	<-m.done
	return m.anon, m.heap, m.live
}

// wireSink reads each batch's body (gunzipping it), counts its lines and
// answers 200 with the receiver's counts; received counts every byte its
// connections read.
type wireSink struct {
	received atomic.Int64
	bufs     sync.Pool
}

func (s *wireSink) start() *httptest.Server {
	srv := httptest.NewUnstartedServer(s)
	srv.Listener = &countingListener{Listener: srv.Listener, n: &s.received}
	srv.Start()
	return srv
}

func (s *wireSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	buf, _ := s.bufs.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, 64<<10)
		buf = &b
	}
	defer s.bufs.Put(buf)
	lines := 0
	for {
		k, err := body.Read(*buf)
		lines += bytes.Count((*buf)[:k], []byte{'\n'})
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	// A pre-filled spool reports no dropped ranges: every line is a reading.
	fmt.Fprintf(w, `{"accepted":%d,"duplicates":0,"conflicts":0}`, lines)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// watchBrokerBytes follows $SYS/broker/bytes/received (the broker must run
// with sys_interval 1) and returns a function giving its latest value;
// with settle it first waits out two publication intervals.
func watchBrokerBytes(b *testing.B, broker *testserver.Mosquitto) func(settle bool) int64 {
	var latest atomic.Int64
	latest.Store(-1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("bench-sys-watcher"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect the $SYS watcher: %v", tok.Error())
	}
	b.Cleanup(func() { c.Disconnect(50) })
	c.Subscribe("$SYS/broker/bytes/received", 0, func(_ mqtt.Client, msg mqtt.Message) {
		if v, err := strconv.ParseInt(string(msg.Payload()), 10, 64); err == nil {
			latest.Store(v)
		}
	})
	return func(settle bool) int64 {
		if settle {
			time.Sleep(2100 * time.Millisecond)
		}
		for deadline := time.Now().Add(5 * time.Second); latest.Load() < 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("no $SYS/broker/bytes/received from the broker within 5s")
			}
		}
		return latest.Load()
	}
}

// startBenchReceipts stands in for the receiver's MQTT ingest: it decodes
// each batch and publishes a receipt for its seqs, without storing them.
func startBenchReceipts(b *testing.B, broker *testserver.Mosquitto) {
	handle := func(c mqtt.Client, msg mqtt.Message) {
		stream, ranges, err := receiptRanges(msg.Payload())
		if err != nil {
			b.Errorf("receipt stand-in: %v", err)
			return
		}
		device := strings.Split(msg.Topic(), "/")[1]
		body, _ := json.Marshal(map[string]any{"stream": stream, "ranges": ranges})
		c.Publish("outpost/"+device+"/receipts", 1, false, body)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("bench-receiver").
		SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe("outpost/+/readings", 1, handle) }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect the receipt stand-in: %v", tok.Error())
	}
	b.Cleanup(func() { c.Disconnect(50) })
	time.Sleep(100 * time.Millisecond) // the subscription
}

// receiptRanges decodes an MQTT batch (gzipped or not) and returns its
// stream and the runs of seqs it holds.
func receiptRanges(payload []byte) (string, [][2]int64, error) {
	var body io.Reader = bytes.NewReader(payload)
	if len(payload) > 2 && payload[0] == 0x1f && payload[1] == 0x8b {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return "", nil, err
		}
		body = zr
	}
	dec := reading.NewDecoder(bufio.NewReader(body), reading.Limits{})
	var stream string
	var ranges [][2]int64
	for {
		var l reading.Line
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else if err != nil {
			return "", nil, err
		}
		if l.Kind != reading.KindReading {
			continue
		}
		stream = l.Reading.Stream.String()
		seq := int64(l.Reading.Seq)
		if n := len(ranges); n > 0 && ranges[n-1][1]+1 == seq {
			ranges[n-1][1] = seq
			continue
		}
		ranges = append(ranges, [2]int64{seq, seq})
	}
	return stream, ranges, nil
}

// benchRawPost posts n readings as pre-encoded bodies of 500 sim readings,
// 4 at a time, to the same sink as the drain: the same run's baseline.
func benchRawPost(b *testing.B, gz bool, n int) {
	sink := &wireSink{}
	srv := sink.start()
	defer srv.Close()
	batch := &reading.Batch{}
	seq := uint64(0)
	simReadings(500, func(r reading.Reading, _ time.Duration) error {
		seq++
		r.Device, r.Stream, r.Seq = benchDevice, 0x9f3c2a71d04b88e1, seq
		batch.Readings = append(batch.Readings, r)
		return nil
	})
	var buf bytes.Buffer
	if _, ok := encodeBatch(&buf, batch, gz); !ok {
		b.Fatal("encode failed")
	}
	body := buf.Bytes()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	posts := (n + 499) / 500
	b.ResetTimer()
	for range b.N {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for next.Add(1) <= int64(posts) {
					req, _ := http.NewRequest("POST", srv.URL+"/v1/readings", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/x-ndjson")
					if gz {
						req.Header.Set("Content-Encoding", "gzip")
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("sink answered %s", resp.Status)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(posts*500*b.N)/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(sink.received.Load())/float64(posts*500*b.N), "wireB/reading")
}

func copyFile(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}
