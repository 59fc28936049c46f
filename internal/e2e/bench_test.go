//go:build e2e

package e2e

// The figures a user sees, on the real binaries (`make bench-e2e`):
//
//   - BenchmarkDrainHTTP, BenchmarkDrainMQTT: a spool holding -backlog
//     readings (default 1M, filled offline through the spool package) is
//     drained by `outpost daemon` into `outpost-receiver` and PostgreSQL,
//     timed from the daemon's start to the last row stored, beside the
//     same run's raw COPY of the same rows into the same server in batches
//     of the same size. PostgreSQL runs with fsync=off (as in the
//     receiver's own benchmarks): the figures measure our code, not the
//     disk, and the COPY baseline pays the same.
//   - BenchmarkDailyLife: the daemon sampling 10 sensors at 1 Hz for -life
//     (default 60s) with the default commit interval: RSS, anonymous
//     memory, CPU seconds, and the bytes handed to pwrite for the spool
//     file per reading (strace, per shared/notes/measuring.md), with the
//     kernel's write_bytes beside it, labelled.

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/spool"
)

var (
	backlogN = flag.Int("backlog", 1_000_000, "readings in the backlog the drain benchmarks start from")
	lifeFor  = flag.Duration("life", 60*time.Second, "how long BenchmarkDailyLife samples 10 sensors at 1 Hz")
)

// copyBatch is the daemon's default batch size: the COPY baseline commits
// in batches of the same size.
const copyBatch = 500

func BenchmarkDrainHTTP(b *testing.B) { benchDrain(b, false) }

func BenchmarkDrainMQTT(b *testing.B) { benchDrain(b, true) }

func benchDrain(b *testing.B, useMQTT bool) {
	pg := testserver.StartPostgres(b, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	name, broker := "bench_http", ""
	if useMQTT {
		name, broker = "bench_mqtt", testserver.StartMosquitto(b, testserver.MosquittoOptions{}).URL()
	}
	r := newRig(b, pg, name, broker)
	n := *backlogN
	var rate, copyRate, recvCPU, anonMax float64
	for i := range b.N {
		path := filepath.Join(r.dir, fmt.Sprintf("spool%d.db", i))
		stream := prefill(b, path, n)
		r.writeBenchConfig(b, path, 0)
		recvPid := r.receiver.cmd.Process.Pid
		cpu0 := cpuSeconds(b, recvPid)
		start := time.Now()
		d := r.startDaemon(b)
		anon := 0.0
		for got := int64(0); got < int64(n); {
			time.Sleep(50 * time.Millisecond)
			if a := memKiB(d.cmd.Process.Pid)["RssAnon"]; a/1024 > anon {
				anon = a / 1024
			}
			err := r.db.QueryRow(context.Background(),
				`SELECT coalesce(sum(received), 0) FROM streams WHERE device_id = 'pi-e2e' AND stream = $1`, int64(stream)).Scan(&got)
			if err != nil {
				b.Fatal(err)
			}
			if time.Since(start) > 30*time.Minute {
				b.Fatalf("only %d of %d readings stored after 30 minutes", got, n)
			}
		}
		elapsed := time.Since(start)
		recvCPU += cpuSeconds(b, recvPid) - cpu0
		d.stop(b)
		rate += float64(n) / elapsed.Seconds()
		anonMax = max(anonMax, anon)
		copyRate += rawCopy(b, r.db, stream, n, i)
		os.Remove(path)
	}
	k := float64(b.N)
	b.ReportMetric(rate/k, "readings/s")
	b.ReportMetric(copyRate/k, "copy_readings/s")
	b.ReportMetric(100*rate/copyRate, "%_of_copy")
	b.ReportMetric(recvCPU/k/(float64(n)/1e5), "receiver_cpu_s/100k")
	b.ReportMetric(anonMax, "daemon_anon_MiB_max")
	b.ReportMetric(float64(n), "backlog")
}

// benchReading is reading i of the backlog: 10 sensors sampled once a
// second, values at 0.01 resolution like the sim driver's.
func benchReading(i int) reading.Reading {
	return reading.Reading{
		Sensor: fmt.Sprintf("sim%d.s0", i%10),
		Value:  float64(2000+(i*37)%1500) / 100,
		Unit:   "C",
		Time:   time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i/10) * time.Second),
	}
}

// prefill writes n readings into a new spool file, offline, and returns
// its stream.
func prefill(b *testing.B, path string, n int) reading.StreamID {
	b.Helper()
	sp, err := spool.Open(spool.Options{Path: path, Device: "pi-e2e", CommitInterval: time.Second,
		CommitReadings: 10000, MaxBufferedReadings: 20000})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		if _, err := sp.Append(ctx, benchReading(i), 0); err != nil {
			b.Fatal(err)
		}
	}
	if err := sp.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	st, err := sp.Stats()
	if err != nil || st.Readings != uint64(n) {
		b.Fatalf("prefill: %+v, %v; want %d readings", st, err, n)
	}
	if err := sp.Close(ctx); err != nil {
		b.Fatal(err)
	}
	return st.Stream
}

// rawCopy copies the same n rows into a table like readings, in
// transactions of copyBatch rows, and returns the rows per second.
func rawCopy(b *testing.B, db *pgx.Conn, stream reading.StreamID, n, i int) float64 {
	b.Helper()
	ctx := context.Background()
	table := fmt.Sprintf("readings_raw%d", i)
	if _, err := db.Exec(ctx, `CREATE TABLE `+table+` (LIKE readings INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	defer db.Exec(ctx, `DROP TABLE `+table)
	cols := []string{"device_id", "stream", "seq", "sensor", "ts", "value", "unit", "labels", "unsynced", "received_at"}
	start := time.Now()
	for from := 0; from < n; from += copyBatch {
		m := min(copyBatch, n-from)
		now := time.Now()
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(m, func(j int) ([]any, error) {
				r := benchReading(from + j)
				return []any{"pi-e2e", int64(stream), int64(from + j + 1), r.Sensor, r.Time, r.Value, r.Unit, nil, false, now}, nil
			}))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// writeBenchConfig writes a config with the defaults a user gets: the
// spool at path, sensors sim sensors at 1 Hz.
func (r *rig) writeBenchConfig(t testing.TB, path string, sensors int) {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "device: pi-e2e\nspool: {path: %s}\n", path)
	if r.broker != "" {
		fmt.Fprintf(&sb, "uplink:\n  kind: mqtt\n  mqtt: {broker: %q}\n", r.broker)
	} else {
		fmt.Fprintf(&sb, "uplink:\n  http: {url: %q, token_file: %s/token}\n", r.url, r.dir)
	}
	fmt.Fprintf(&sb, "status: {socket: %s}\nsensors:\n", r.socket)
	for i := range sensors {
		fmt.Fprintf(&sb, "  - {name: sim%d, driver: sim, interval: 1s, series: 1, seed: %d}\n", i, i+1)
	}
	r.config = filepath.Join(r.dir, "outpost.yaml")
	if err := os.WriteFile(r.config, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkDailyLife: 10 sensors at 1 Hz for -life, the defaults of a
// Pi's config, the receiver up.
func BenchmarkDailyLife(b *testing.B) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		b.Skip("needs strace to count the bytes bbolt hands to pwrite")
	}
	pg := testserver.StartPostgres(b)
	r := newRig(b, pg, "life", "")
	for i := range b.N {
		path := filepath.Join(r.dir, fmt.Sprintf("life%d.db", i))
		r.writeBenchConfig(b, path, 10)
		trace := filepath.Join(r.dir, "strace.log")
		// seccomp-bpf: only the traced calls stop the daemon, so the trace
		// costs it next to nothing at 1 Hz.
		tp := startProcAt(b, filepath.Join(r.dir, "outpost.log"), strace, "-f", "--seccomp-bpf", "-qq", "-ttt", "-y",
			"-e", "trace=pwrite64,write,fdatasync,fsync", "-o", trace,
			filepath.Join(binDir, "outpost"), "daemon", "--config", r.config)
		waitReady(b, r)
		pid := childOf(b, tp.cmd.Process.Pid)
		time.Sleep(2 * time.Second) // past start-up
		st0, err := r.status(b)
		if err != nil {
			b.Fatal(err)
		}
		cpu0, io0, t0 := cpuSeconds(b, pid), ioWriteBytes(pid), float64(time.Now().UnixMicro())/1e6
		time.Sleep(*lifeFor)
		st1, err := r.status(b)
		if err != nil {
			b.Fatal(err)
		}
		cpu1, io1, t1 := cpuSeconds(b, pid), ioWriteBytes(pid), float64(time.Now().UnixMicro())/1e6
		mem := memKiB(pid)
		syscall.Kill(pid, syscall.SIGTERM)
		tp.cmd.Wait()
		readings := float64(st1.Spool.Seq - st0.Spool.Seq)
		if readings < 0.9*10*lifeFor.Seconds() {
			b.Fatalf("%v readings in %v; want about 10 a second", readings, *lifeFor)
		}
		pw, syncs := spoolWrites(b, trace, filepath.Base(path), t0, t1)
		b.ReportMetric(mem["VmRSS"]/1024, "rss_MiB")
		b.ReportMetric(mem["RssAnon"]/1024, "anon_MiB")
		b.ReportMetric(cpu1-cpu0, "cpu_s")
		b.ReportMetric(100*(cpu1-cpu0)/lifeFor.Seconds(), "%_of_a_core")
		b.ReportMetric(float64(pw)/readings, "pwrite_B/reading")
		b.ReportMetric(float64(syncs)/readings, "fsyncs/reading")
		b.ReportMetric(float64(io1-io0)/readings, "kernel_write_bytes_B/reading")
		b.ReportMetric(readings, "readings")
	}
}

// startProcAt is startProc for a program by path.
func startProcAt(t testing.TB, log, path string, args ...string) *proc {
	t.Helper()
	rel, err := filepath.Rel(binDir, path)
	if err == nil && !strings.HasPrefix(rel, "..") {
		return startProc(t, log, rel, args...)
	}
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: log}
	t.Cleanup(func() { p.signal(syscall.SIGKILL) })
	return p
}

// childOf waits for the first child of pid and returns it.
func childOf(t testing.TB, pid int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			c, _ := strconv.Atoi(f[0])
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d started no child within 10s", pid)
	return 0
}

func waitReady(t testing.TB, r *rig) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, err := r.status(t); err == nil && st.Spool.Seq > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon not answering with readings within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuSeconds is the user+system CPU time of pid (USER_HZ is 100 on Linux).
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// memKiB reads the kB fields of /proc/pid/status.
func memKiB(pid int) map[string]float64 {
	m := map[string]float64{}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if fs := strings.Fields(v); ok && len(fs) == 2 && fs[1] == "kB" {
			m[k], _ = strconv.ParseFloat(fs[0], 64)
		}
	}
	return m
}

// ioWriteBytes is the kernel's write_bytes of pid (charged per dirtied
// folio: see shared/notes/measuring.md, never a figure alone).
func ioWriteBytes(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// spoolWrites sums, from an strace -f -ttt -y log, the bytes written to
// the file named name and its fsyncs between t0 and t1.
func spoolWrites(t testing.TB, log, name string, t0, t1 float64) (bytes, syncs int64) {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fs := strings.SplitN(sc.Text(), " ", 3) // pid time call
		if len(fs) < 3 || !strings.Contains(fs[2], name+">") {
			continue
		}
		ts, err := strconv.ParseFloat(fs[1], 64)
		if err != nil || ts < t0 || ts > t1 {
			continue
		}
		call, ret := fs[2], ""
		if i := strings.LastIndex(call, " = "); i >= 0 {
			ret = strings.Fields(call[i+3:])[0]
		}
		switch {
		case strings.HasPrefix(call, "pwrite64("), strings.HasPrefix(call, "write("):
			n, _ := strconv.ParseInt(ret, 10, 64)
			bytes += max(n, 0)
		case strings.HasPrefix(call, "fdatasync("), strings.HasPrefix(call, "fsync("):
			syncs++
		}
	}
	return bytes, syncs
}
