//go:build e2e

package e2e

// BenchmarkRecovery: how the real binaries come back from a link outage and
// from a crash (issue 25), one sub-benchmark per figure, each figure the
// median [min–max] of -recovery-runs runs. The device is one sim sensor at
// 100 ms (10 readings/s, no spikes or dropouts) with every other key at the
// default a user gets (batch 500, in_flight 4, commit_interval 1s, MQTT
// receipt_timeout 60s); PostgreSQL runs with fsync=off, as in the drain
// benchmarks, so the disk's noise stays out of second-scale figures.
//
//   - HTTP-outage: the receiver is stopped (SIGTERM) for -outage while the
//     daemon samples, then started again. The link returns at the first TCP
//     connect the new receiver accepts (polled every 5 ms). first_s is the
//     earliest received_at stored after that, less the return;
//     backlog_s the latest received_at of the readings taken before the
//     return (seq 1…S, where S+1 is the first reading taken at or after
//     it), less the return, taken once every one of them is stored;
//     after_first_s their difference; oldest_s the received_at of the
//     oldest reading delivered after the outage, less the return (0 when
//     the backlog drains oldest first and at once); backlog_readings how
//     many readings waited. received_at is the receiver's wall clock when
//     the batch arrived, the same clock as the benchmark's.
//   - HTTP-kill: the same, with the daemon killed (SIGKILL) half way
//     through the outage and started again at once.
//   - MQTT-outage, MQTT-kill: the same over Mosquitto. What goes down is
//     the device's own link to the broker (-mqtt-outage link, the default):
//     the daemon connects through a loopback forwarder that, for the
//     outage, resets its connections and refuses new ones (as a stopped
//     receiver does over HTTP), while the broker and the receiver's
//     session stay up, as they do in the cloud when a field link fails.
//     Stopping the broker instead (-mqtt-outage broker) also cuts the
//     receiver, whose reconnect backoff (paho's, up to 30 s) then enters
//     the figures.
//   - resend: a spool holding -resend-backlog readings (written through
//     `outpost import`, so by the binary under test) drains over HTTP; the
//     daemon is killed when the receiver has stored a random 40–60 % of
//     them, and started again until all are stored. resent is what the
//     receiver counted as duplicates in that time (its /metrics),
//     killed_at how many were stored at the kill.
//   - lost: the daemon samples (10 readings/s, commit_interval 1s) and is
//     killed at a random moment 3–4 s after its start, always half way
//     between two reads (the sampler reads on a 100 ms wall-clock grid), so
//     the sampler's own count of the readings it handed to the spool
//     (status sensors[].readings, fetched 20 ms after the last read before
//     the kill) is exact. It is then started again without sensors: lost is
//     handed less the spool's committed seq after that restart (a new
//     spool per kill), and the receiver must end up with every committed
//     one. One value per kill: lost_kill1, lost_kill2, ….
//   - idle: the daemon sampling at 10 readings/s and delivering over HTTP,
//     for -idle after 10 s of warm-up, with no status calls: RSS,
//     anonymous and file-backed (Rss less Anonymous) from
//     /proc/PID/smaps_rollup, each the median of samples every 5 s over
//     the span (a snapshot lands anywhere in a GC cycle); CPU
//     (utime+stime) over the span, as a percentage of one core and in
//     ms per minute; and wake-ups, the context switches of all its
//     threads per second (voluntary: a thread blocking, to be woken
//     again; nonvoluntary: preempted). Compare builds with -bindir, e.g.
//     the previous commit's beside this one's.
//
// Each figure is reported as its median (unit as named), _min and _max;
// each leaf benchmark logs a row per figure with every run's value in
// order, and the summary of all figures goes to stdout at the end.
//
// -bindir runs the binaries of another build instead of the ones TestMain
// built: a comma-separated list of [label=]DIR, each DIR holding outpost
// and outpost-receiver (an empty DIR stands for TestMain's build). With more
// than one, each figure alternates between them run by run, each with its
// own receiver, database and broker, and reports one sub-benchmark per
// label (…/bin=LABEL), so a before/after comparison shares the machine's
// moods. Run with -benchtime 1x, e.g.
//
//	OUTPOST_REQUIRE_SERVICES=1 go test -tags e2e -run '^$' -bench BenchmarkRecovery \
//		-benchtime 1x -count 1 -timeout 90m ./internal/e2e -args -outage 60s -recovery-runs 5 \
//		-bindir before=/tmp/outpost-prev,after=

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/testserver"
)

var (
	outageFor     = flag.Duration("outage", 60*time.Second, "how long BenchmarkRecovery keeps the link down")
	recoveryRuns  = flag.Int("recovery-runs", 5, "runs (kills, for lost) of each BenchmarkRecovery figure")
	mqttOutage    = flag.String("mqtt-outage", "link", "what BenchmarkRecovery's MQTT outage stops: link (the device's connection to the broker) or broker")
	resendBacklog = flag.Int("resend-backlog", 50_000, "readings in the spool BenchmarkRecovery/resend drains and kills")
	idleFor       = flag.Duration("idle", 60*time.Second, "how long BenchmarkRecovery/idle measures the sampling daemon")
	binDirs       = flag.String("bindir", "", "comma-separated [label=]DIR of prebuilt outpost and outpost-receiver to run instead of TestMain's build (empty DIR: that build)")
)

// The sampling the recovery figures use: 10 readings/s on the sampler's
// wall-clock grid.
const (
	sampleInterval = 100 * time.Millisecond
	recoveryWarmup = 5 * time.Second // delivering before the outage
	recoveryWait   = 5 * time.Minute // for the backlog after the return
)

func BenchmarkRecovery(b *testing.B) {
	sets := parseBinSets(b)
	pg := testserver.StartPostgres(b, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	var table []string
	figure := func(name string, units []string, setup figureSetup) {
		b.Run(name, func(b *testing.B) { table = append(table, alternate(b, sets, units, setup)...) })
	}
	recovery := []string{"first_s", "backlog_s", "after_first_s", "oldest_s", "backlog_readings"}
	figure("HTTP-outage", recovery, recoveryFigure(pg, false, false))
	figure("HTTP-kill", recovery, recoveryFigure(pg, false, true))
	figure("MQTT-outage", recovery, recoveryFigure(pg, true, false))
	figure("MQTT-kill", recovery, recoveryFigure(pg, true, true))
	figure("resend", []string{"resent", "killed_at"}, resendFigure(pg))
	lost := []string{"lost", "handed"}
	for i := range *recoveryRuns {
		lost = append(lost, fmt.Sprintf("lost_kill%d", i+1))
	}
	figure("lost", lost, lostFigure(pg))
	figure("idle", []string{"rss_MiB", "anon_MiB", "file_MiB", "%_of_a_core", "cpu_ms/min", "wakeups/s"}, idleFigure(pg))
	if len(table) > 0 { // on stdout: testing would cut a log this long
		fmt.Printf("BenchmarkRecovery summary, median [min–max] of %d runs (outage %v), then each run's value in order:\n%s\n",
			*recoveryRuns, *outageFor, strings.Join(table, "\n"))
	}
}

// figureSetup prepares a figure for binary set idx (binDir is set to it)
// and returns the function doing run i.
type figureSetup func(b *testing.B, idx int) func(run int) map[string]float64

// binSet is one build under test: the directory holding its outpost and
// outpost-receiver.
type binSet struct{ label, dir string }

func parseBinSets(b *testing.B) []binSet {
	built := binDir
	b.Cleanup(func() { binDir = built })
	if *binDirs == "" {
		return []binSet{{"built", built}}
	}
	var sets []binSet
	for _, item := range strings.Split(*binDirs, ",") {
		label, dir, ok := strings.Cut(item, "=")
		if !ok {
			label, dir = filepath.Base(item), item
		}
		if dir == "" {
			dir = built
		}
		if label == "" || slices.ContainsFunc(sets, func(s binSet) bool { return s.label == label }) {
			b.Fatalf("-bindir %q: every set needs its own label", *binDirs)
		}
		for _, cmd := range []string{"outpost", "outpost-receiver"} {
			if _, err := os.Stat(filepath.Join(dir, cmd)); err != nil {
				b.Fatalf("-bindir %s: %v", item, err)
			}
		}
		sets = append(sets, binSet{label, dir})
	}
	return sets
}

// alternate prepares a figure for every binary set, runs each
// -recovery-runs times, alternating sets run by run, and reports each set's
// figures on a leaf benchmark (whose log, unlike a parent's, shows without
// -v). It returns the summary rows.
func alternate(b *testing.B, sets []binSet, units []string, setup figureSetup) []string {
	runs := make([]func(int) map[string]float64, len(sets))
	for i, s := range sets {
		binDir = s.dir
		runs[i] = setup(b, i)
	}
	results := make([][]map[string]float64, len(sets))
	for run := range *recoveryRuns {
		for i, s := range sets {
			binDir = s.dir
			results[i] = append(results[i], runs[i](run))
		}
	}
	report := func(b *testing.B, i int) []string {
		rows := reportRuns(b, b.Name(), results[i], units)
		// testing keeps 10 lines of a benchmark's log: a row per figure.
		b.Logf("median [min–max] of %d runs, then each run's value in order:\n%s", len(results[i]), strings.Join(rows, "\n"))
		return rows
	}
	if len(sets) == 1 {
		return report(b, 0)
	}
	var rows []string
	for i, s := range sets {
		b.Run("bin="+s.label, func(b *testing.B) {
			if b.N == 1 { // not again if -benchtime asks for more
				rows = append(rows, report(b, i)...)
			}
		})
	}
	return rows
}

// reportRuns reports each unit's median, _min and _max over the runs, and
// returns a table row per unit that every run has (lost_kill1… are in the
// runs of lost).
func reportRuns(b *testing.B, name string, runs []map[string]float64, units []string) []string {
	var rows []string
	for _, u := range units {
		var vals []float64
		for _, r := range runs {
			if v, ok := r[u]; ok {
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			continue
		}
		row := len(vals) == len(runs)
		inOrder := make([]string, len(vals))
		for i, v := range vals {
			inOrder[i] = formatFigure(v)
		}
		slices.Sort(vals)
		med := vals[len(vals)/2]
		if len(vals)%2 == 0 {
			med = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
		}
		b.ReportMetric(med, u)
		if len(vals) > 1 {
			b.ReportMetric(vals[0], u+"_min")
			b.ReportMetric(vals[len(vals)-1], u+"_max")
		}
		if !row {
			continue
		}
		rows = append(rows, fmt.Sprintf("%-44s %-16s %9s [%s–%s]  runs: %s", name, u,
			formatFigure(med), formatFigure(vals[0]), formatFigure(vals[len(vals)-1]), strings.Join(inOrder, ", ")))
	}
	return rows
}

func formatFigure(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// writeRecoveryConfig writes the defaults a user gets with the spool at
// path and, when sampling, one sim sensor at 10 readings/s.
func (r *rig) writeRecoveryConfig(b *testing.B, path string, sampling bool) {
	b.Helper()
	r.writeBenchConfig(b, path, 0) // ends with "sensors:"
	if !sampling {
		return
	}
	f, err := os.OpenFile(r.config, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = fmt.Fprintf(f, "  - {name: sim0, driver: sim, interval: %v, series: 1, seed: 1, spike_rate: 0, dropout_rate: 0}\n", sampleInterval)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		b.Fatal(err)
	}
}

// liveStream waits for the daemon's status and returns its stream as the
// receiver stores it (a signed 64-bit integer).
func liveStream(b *testing.B, r *rig) int64 {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := r.status(b)
		if err == nil && st.Spool.Stream != "" {
			s, err := strconv.ParseUint(st.Spool.Stream, 16, 64)
			if err != nil {
				b.Fatalf("status: stream %q: %v", st.Spool.Stream, err)
			}
			return int64(s)
		}
		if time.Now().After(deadline) {
			b.Fatalf("daemon not answering its status within 20s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storedOf counts the readings the receiver stored of one stream, or of
// every stream of the device when stream is 0.
func storedOf(b *testing.B, r *rig, stream int64) int64 {
	b.Helper()
	var n int64
	err := r.db.QueryRow(context.Background(), `SELECT coalesce(sum(received), 0) FROM streams
		WHERE device_id = 'pi-e2e' AND ($1::bigint = 0 OR stream = $1)`, stream).Scan(&n)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// recoveryFigure: a -outage outage of the link, the daemon sampling, and
// optionally a kill -9 half way through it; see the top of the file.
func recoveryFigure(pg *testserver.Postgres, useMQTT, kill bool) figureSetup {
	return func(b *testing.B, idx int) func(int) map[string]float64 {
		kind := "http"
		if useMQTT {
			kind = "mqtt"
		}
		name := fmt.Sprintf("recovery_%s_%t_%d", kind, kill, idx)
		var cut func()
		var restore func() time.Time
		var r *rig
		switch {
		case !useMQTT:
			r = newRig(b, pg, name, "")
			cut = func() { r.receiver.stop(b) }
			restore = func() time.Time {
				r.receiver = startProc(b, r.receiver.log, "outpost-receiver", r.receiver.cmd.Args[1:]...)
				return whenListening(b, strings.TrimPrefix(r.url, "http://"))
			}
		case *mqttOutage == "broker":
			broker := testserver.StartMosquitto(b, testserver.MosquittoOptions{})
			r = newRig(b, pg, name, broker.URL())
			cut = broker.Stop
			restore = func() time.Time { broker.Start(); return time.Now() }
		case *mqttOutage == "link":
			broker := testserver.StartMosquitto(b, testserver.MosquittoOptions{})
			r = newRig(b, pg, name, broker.URL())
			l := newLinkProxy(b, broker.Addr())
			r.broker = "tcp://" + l.addr // the daemon's way to the broker
			cut, restore = l.cut, func() time.Time { return l.restore(b) }
		default:
			b.Fatalf("-mqtt-outage %q: want link or broker", *mqttOutage)
		}
		return func(run int) map[string]float64 {
			r.writeRecoveryConfig(b, filepath.Join(r.dir, fmt.Sprintf("spool%d.db", run)), true)
			start := time.Now()
			d := r.startDaemon(b)
			stream := liveStream(b, r)
			for storedOf(b, r, stream) == 0 {
				if time.Since(start) > 30*time.Second {
					log, _ := os.ReadFile(d.log)
					b.Fatalf("nothing of stream %016x stored within 30s of the daemon's start:\n%s", uint64(stream), log)
				}
				time.Sleep(50 * time.Millisecond)
			}
			sleepUntil(start.Add(recoveryWarmup))
			cut()
			down := time.Now()
			if kill {
				sleepUntil(down.Add(*outageFor / 2))
				d.signal(syscall.SIGKILL)
				d = r.startDaemon(b)
			}
			sleepUntil(down.Add(*outageFor))
			up := restore()
			res := backlogFigures(b, r, stream, down, up)
			d.stop(b)
			return res
		}
	}
}

// whenListening polls addr every 5 ms and returns the moment of the first
// TCP connect it accepts.
func whenListening(b *testing.B, addr string) time.Time {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			t := time.Now()
			c.Close()
			return t
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not accepting connections within 30s: %v", addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// backlogFigures waits until every reading taken before up is stored and
// returns the recovery figures of one run (see the top of the file).
func backlogFigures(b *testing.B, r *rig, stream int64, down, up time.Time) map[string]float64 {
	b.Helper()
	ctx := context.Background()
	mid := down.Add(up.Sub(down) / 2) // nothing can arrive between down and up
	var last int64                    // S: the last reading taken before up
	for deadline := up.Add(recoveryWait); ; {
		var s *int64
		var n int64
		var next bool
		err := r.db.QueryRow(ctx, `WITH b AS (SELECT max(seq) AS s FROM readings WHERE device_id = 'pi-e2e' AND stream = $1 AND ts < $2)
			SELECT b.s,
				(SELECT count(*) FROM readings WHERE device_id = 'pi-e2e' AND stream = $1 AND seq <= b.s),
				EXISTS (SELECT 1 FROM readings WHERE device_id = 'pi-e2e' AND stream = $1 AND seq = b.s + 1 AND ts >= $2)
			FROM b`, stream, up).Scan(&s, &n, &next)
		if err != nil {
			b.Fatal(err)
		}
		if s != nil && n == *s && next {
			last = *s
			break
		}
		if time.Now().After(deadline) {
			st, err := r.status(b)
			b.Fatalf("%v after the link returned, the readings taken before it are not all stored: seq ≤ %v, %d stored, next stored %t; daemon %+v %+v (%v)",
				recoveryWait, s, n, next, st.Spool, st.Uplink, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var first, all, oldest time.Time
	var waited int64
	err := r.db.QueryRow(ctx, `SELECT min(received_at) FILTER (WHERE received_at > $2),
			max(received_at) FILTER (WHERE seq <= $3),
			count(*) FILTER (WHERE seq <= $3 AND received_at > $2),
			(SELECT received_at FROM readings WHERE device_id = 'pi-e2e' AND stream = $1 AND received_at > $2 ORDER BY seq LIMIT 1)
		FROM readings WHERE device_id = 'pi-e2e' AND stream = $1`, stream, mid, last).Scan(&first, &all, &waited, &oldest)
	if err != nil {
		b.Fatal(err)
	}
	return map[string]float64{
		"first_s":          first.Sub(up).Seconds(),
		"backlog_s":        all.Sub(up).Seconds(),
		"after_first_s":    all.Sub(first).Seconds(),
		"oldest_s":         oldest.Sub(up).Seconds(),
		"backlog_readings": float64(waited),
	}
}

// linkProxy stands for the device's own network link: a loopback TCP
// forwarder to target that cut takes down (its listener closed, so new
// connections are refused, and every open one reset) and restore brings
// back on the same port.
type linkProxy struct {
	addr, target string

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]net.Listener
}

func newLinkProxy(b *testing.B, target string) *linkProxy {
	b.Helper()
	l := &linkProxy{target: target, conns: map[net.Conn]net.Listener{}}
	if err := l.listen("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	l.addr = l.ln.Addr().String()
	b.Cleanup(l.cut)
	return l
}

func (l *linkProxy) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.forward(ln, c)
		}
	}()
	return nil
}

// track records c as open through ln; false when ln was cut meanwhile.
func (l *linkProxy) track(ln net.Listener, c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != ln {
		return false
	}
	l.conns[c] = ln
	return true
}

func (l *linkProxy) forward(ln net.Listener, client net.Conn) {
	server, err := net.Dial("tcp", l.target)
	if err != nil {
		resetConn(client)
		return
	}
	if !l.track(ln, client) || !l.track(ln, server) {
		resetConn(client)
		resetConn(server)
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(server, client)
		resetConn(server)
		close(done)
	}()
	io.Copy(client, server)
	resetConn(client)
	<-done
	l.mu.Lock()
	delete(l.conns, client)
	delete(l.conns, server)
	l.mu.Unlock()
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (l *linkProxy) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for c := range l.conns {
		resetConn(c)
	}
	clear(l.conns)
}

// restore listens again on the link's port and returns when it does.
func (l *linkProxy) restore(b *testing.B) time.Time {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.listen(l.addr)
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("link proxy: listening on %s again: %v", l.addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resendFigure: the drain of -resend-backlog readings over HTTP, killed
// half way (40–60 %); see the top of the file.
func resendFigure(pg *testserver.Postgres) figureSetup {
	return func(b *testing.B, idx int) func(int) map[string]float64 {
		r := newRig(b, pg, fmt.Sprintf("recovery_resend_%d", idx), "")
		n := *resendBacklog
		backlog := filepath.Join(r.dir, "backlog.ndjson")
		var sb strings.Builder
		for i := range n {
			rd := benchReading(i)
			fmt.Fprintf(&sb, `{"sensor":%q,"value":%s,"unit":%q,"timestamp":%q}`+"\n",
				rd.Sensor, strconv.FormatFloat(rd.Value, 'f', -1, 64), rd.Unit, rd.Time.Format(time.RFC3339Nano))
		}
		if err := os.WriteFile(backlog, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		return func(run int) map[string]float64 {
			r.writeRecoveryConfig(b, filepath.Join(r.dir, fmt.Sprintf("spool%d.db", run)), false)
			d := r.startDaemon(b) // import fills a spool that exists
			liveStream(b, r)
			d.stop(b)
			if out, err := exec.Command(filepath.Join(binDir, "outpost"), "import", "--config", r.config, backlog).CombinedOutput(); err != nil {
				b.Fatalf("outpost import: %v\n%s", err, out)
			}
			rng := rand.New(rand.NewPCG(uint64(run), 25)) // the same kill points for every binary set
			killAt := int64(n) * int64(40+rng.IntN(21)) / 100
			stored0, dups0 := storedOf(b, r, 0), r.duplicates(b)
			start := time.Now()
			d = r.startDaemon(b)
			for storedOf(b, r, 0)-stored0 < killAt {
				if time.Since(start) > 5*time.Minute {
					b.Fatalf("fewer than %d of %d readings stored within 5 minutes", killAt, n)
				}
				time.Sleep(2 * time.Millisecond)
			}
			d.signal(syscall.SIGKILL)
			atKill := storedOf(b, r, 0) - stored0
			d = r.startDaemon(b)
			for {
				st, err := r.status(b)
				if err == nil && st.Spool.Readings == 0 && storedOf(b, r, 0)-stored0 == int64(n) {
					break
				}
				if time.Since(start) > 10*time.Minute {
					b.Fatalf("backlog not delivered within 10 minutes: %d of %d stored; %+v (%v)", storedOf(b, r, 0)-stored0, n, st.Spool, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			d.stop(b)
			return map[string]float64{"resent": float64(r.duplicates(b) - dups0), "killed_at": float64(atKill)}
		}
	}
}

// lostFigure: a kill -9 at a random moment while sampling, then what the
// spool kept; see the top of the file. Run i is kill i.
func lostFigure(pg *testserver.Postgres) figureSetup {
	return func(b *testing.B, idx int) func(int) map[string]float64 {
		r := newRig(b, pg, fmt.Sprintf("recovery_lost_%d", idx), "")
		return func(run int) map[string]float64 {
			path := filepath.Join(r.dir, fmt.Sprintf("spool%d.db", run))
			r.writeRecoveryConfig(b, path, true)
			rng := rand.New(rand.NewPCG(uint64(run), 6)) // the same moments for every binary set
			start := time.Now()
			d := r.startDaemon(b)
			handed, killed := handedBeforeKill(b, r, start.Add(3*time.Second+time.Duration(rng.IntN(1000))*time.Millisecond))
			sleepUntil(killed)
			d.signal(syscall.SIGKILL)

			// What the spool holds after a restart, with nothing sampled.
			r.writeRecoveryConfig(b, path, false)
			d = r.startDaemon(b)
			stream := liveStream(b, r)
			var kept uint64
			for deadline := time.Now().Add(time.Minute); ; {
				st, err := r.status(b)
				if err == nil {
					kept = st.Spool.Seq
					if st.Spool.Readings == 0 && uint64(storedOf(b, r, stream)) == kept {
						break
					}
				}
				if time.Now().After(deadline) {
					b.Fatalf("after the restart the spool did not drain into the receiver within a minute: %+v (%v)", st.Spool, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			d.stop(b)
			lost := float64(handed) - float64(kept)
			return map[string]float64{"lost": lost, "handed": float64(handed), fmt.Sprintf("lost_kill%d", run+1): lost}
		}
	}
}

// handedBeforeKill picks the first moment after from half way between two
// reads of the sampler's grid and returns it with the sampler's count of
// readings handed over by then, fetched 20 ms after the read before it
// (and checked to be after that read and before the kill moment).
func handedBeforeKill(b *testing.B, r *rig, from time.Time) (uint64, time.Time) {
	b.Helper()
	slot := from.Truncate(sampleInterval)
	var err error
	for try := 0; try < 20; try, slot = try+1, slot.Add(sampleInterval) {
		if late := time.Now().Add(-sampleInterval / 5); slot.Before(late) {
			slot = late.Truncate(sampleInterval).Add(sampleInterval)
		}
		kill := slot.Add(sampleInterval * 6 / 10)
		sleepUntil(slot.Add(sampleInterval / 5))
		st, e := r.status(b)
		if err = e; err != nil {
			continue
		}
		if time.Now().After(kill.Add(-5 * time.Millisecond)) {
			err = errors.New("status too slow")
			continue
		}
		var handed uint64
		ok := len(st.Sensors) > 0
		for _, s := range st.Sensors {
			handed += s.Readings
			ok = ok && !s.LastTime.Before(slot)
		}
		if !ok {
			err = fmt.Errorf("the read of %v was not handed over 20 ms later: %+v", slot, st.Sensors)
			continue
		}
		return handed, kill
	}
	b.Fatalf("no moment to kill the daemon found in 2s: %v", err)
	return 0, time.Time{}
}

// idleFigure: the daemon's footprint while it samples 10 readings/s and
// delivers them over HTTP; see the top of the file.
func idleFigure(pg *testserver.Postgres) figureSetup {
	return func(b *testing.B, idx int) func(int) map[string]float64 {
		r := newRig(b, pg, fmt.Sprintf("recovery_idle_%d", idx), "")
		return func(run int) map[string]float64 {
			r.writeRecoveryConfig(b, filepath.Join(r.dir, fmt.Sprintf("spool%d.db", run)), true)
			d := r.startDaemon(b)
			waitReady(b, r)
			time.Sleep(10 * time.Second) // past start-up; then no status calls
			pid := d.cmd.Process.Pid
			cpu0, sw0, t0 := cpuSeconds(b, pid), contextSwitches(b, pid), time.Now()
			var rss, anon []float64
			for next := t0; ; {
				next = next.Add(5 * time.Second)
				if next.After(t0.Add(*idleFor)) {
					break
				}
				sleepUntil(next)
				m := smapsRollupKiB(b, pid)
				rss, anon = append(rss, m["Rss"]), append(anon, m["Anonymous"])
			}
			sleepUntil(t0.Add(*idleFor))
			cpu1, sw1, t1 := cpuSeconds(b, pid), contextSwitches(b, pid), time.Now()
			d.stop(b)
			if len(rss) == 0 {
				b.Fatalf("-idle %v: shorter than one 5s sample", *idleFor)
			}
			file := make([]float64, len(rss))
			for i := range rss {
				file[i] = rss[i] - anon[i]
			}
			span := t1.Sub(t0).Seconds()
			return map[string]float64{
				"rss_MiB":     median(rss) / 1024,
				"anon_MiB":    median(anon) / 1024,
				"file_MiB":    median(file) / 1024,
				"%_of_a_core": 100 * (cpu1 - cpu0) / span,
				"cpu_ms/min":  1000 * 60 * (cpu1 - cpu0) / span,
				"wakeups/s":   float64(sw1-sw0) / span,
			}
		}
	}
}

func median(v []float64) float64 {
	v = slices.Sorted(slices.Values(v))
	if len(v)%2 == 0 {
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

// contextSwitches sums the voluntary and nonvoluntary context switches of
// every thread of pid (a thread's own count is in its task's status).
func contextSwitches(b *testing.B, pid int) uint64 {
	b.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	var n uint64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread has just exited
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				c, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

// smapsRollupKiB reads the kB fields of /proc/pid/smaps_rollup (counted
// from the page tables, exact, unlike status's RssAnon and RssFile).
func smapsRollupKiB(b *testing.B, pid int) map[string]float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			m[strings.TrimSuffix(f[0], ":")], _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return m
}
