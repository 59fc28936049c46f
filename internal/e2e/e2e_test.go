//go:build e2e

// Package e2e proves the pipeline's promises on the real binaries:
// `outpost daemon` with sim sensors → spool → HTTP → `outpost-receiver` →
// PostgreSQL, all on loopback, started by the test. Run with
// `go test -tags e2e ./internal/e2e` (make test does).
package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-iot/outpost/daemon"
	"github.com/outpost-iot/outpost/internal/faultproxy"
	"github.com/outpost-iot/outpost/internal/testserver"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, cmd := range []string{"outpost", "outpost-receiver"} {
		// Built as the Makefile and the packages build them (static,
		// stripped), so footprint figures are those of what ships.
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, cmd), "../../cmd/"+cmd)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", cmd, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a running binary whose stderr goes to a log file.
type proc struct {
	cmd *exec.Cmd
	log string
}

func startProc(t testing.TB, log string, name string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: log}
	t.Cleanup(func() { p.signal(syscall.SIGKILL) })
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(sig)
		p.cmd.Wait()
	}
}

// stop sends SIGTERM and wants a clean exit within 20s.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			log, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited with %v after SIGTERM:\n%s", p.cmd.Path, err, log)
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("%s did not stop within 20s of SIGTERM", p.cmd.Path)
	}
}

// rig is one receiver on a private Postgres and one device's config; with
// a broker, the device and the receiver speak MQTT through it.
type rig struct {
	dir, dbURL, url, config, socket string
	broker                          string
	liveStream                      string // the daemon's stream at the end
	spoolDir                        string // where the spool file is; dir when empty
	receiver                        *proc
	db                              *pgx.Conn
}

func newRig(t testing.TB, pg *testserver.Postgres, name, broker string) *rig {
	t.Helper()
	r := &rig{dir: t.TempDir(), broker: broker}
	r.dbURL = pg.CreateDatabase(t, name)
	out, err := exec.Command(filepath.Join(binDir, "outpost-receiver"), "device", "add", "pi-e2e", "--database-url", r.dbURL).Output()
	if err != nil {
		t.Fatalf("device add: %v", err)
	}
	token := filepath.Join(r.dir, "token")
	if err := os.WriteFile(token, out, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	r.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--database-url", r.dbURL}
	if broker != "" {
		args = append(args, "--mqtt-broker", broker, "--mqtt-client-id", "receiver-"+name)
	}
	r.receiver = startProc(t, filepath.Join(r.dir, "receiver.log"), "outpost-receiver", args...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(r.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(r.receiver.log)
			t.Fatalf("receiver not ready after 20s:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.socket = filepath.Join(r.dir, "outpost.sock")
	r.db, err = pgx.Connect(context.Background(), r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.db.Close(context.Background()) })
	return r
}

// commitInterval is the devices' spool.commit_interval.
const commitInterval = 200 * time.Millisecond

// writeConfig writes the device config with n sim sensors (none to only
// drain what the spool holds).
func (r *rig) writeConfig(t testing.TB, sensors int) {
	t.Helper()
	var b strings.Builder
	spoolDir := r.dir
	if r.spoolDir != "" {
		spoolDir = r.spoolDir
	}
	fmt.Fprintf(&b, "device: pi-e2e\nspool: {path: %s/spool.db, commit_interval: %v}\n", spoolDir, commitInterval)
	if r.broker != "" {
		fmt.Fprintf(&b, "uplink:\n  kind: mqtt\n  mqtt: {broker: %q, receipt_timeout: 5s}\n  batch: {max_readings: 200}\n  heartbeat: 1s\n", r.broker)
	} else {
		fmt.Fprintf(&b, "uplink:\n  http: {url: %q, token_file: %s/token}\n  batch: {max_readings: 200}\n  heartbeat: 1s\n", r.url, r.dir)
	}
	fmt.Fprintf(&b, "status: {socket: %s}\n", r.socket)
	b.WriteString("sensors:\n")
	for i := range sensors {
		fmt.Fprintf(&b, "  - {name: sim%d, driver: sim, interval: 20ms, series: 1, seed: %d}\n", i, i+1)
	}
	r.config = filepath.Join(r.dir, "outpost.yaml")
	if err := os.WriteFile(r.config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) startDaemon(t testing.TB) *proc {
	return startProc(t, filepath.Join(r.dir, "outpost.log"), "outpost", "daemon", "--config", r.config)
}

func (r *rig) status(t testing.TB) (daemon.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, _, err := daemon.FetchStatus(ctx, r.socket)
	return st, err
}

// drainAll runs the daemon without sensors until its spool is empty, and
// returns its last status (the live stream's seq high-water mark in it).
func (r *rig) drainAll(t *testing.T) daemon.Status {
	t.Helper()
	r.writeConfig(t, 0)
	d := r.startDaemon(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := r.status(t)
		if err == nil && st.Spool.Readings == 0 && st.Uplink.State != "retrying" {
			d.stop(t)
			r.liveStream = st.Spool.Stream
			return st
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(d.log)
			t.Fatalf("spool not drained within 60s: %+v, %v\n%s", st.Spool, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAccounting: for every stream, the stored seqs plus the ranges the
// device reported dropped cover 1..max with no hole, nothing was stored
// twice with different contents, and the live stream reaches the device's
// committed seq. It returns what it counted.
func (r *rig) checkAccounting(t *testing.T, liveSeq uint64) tally {
	t.Helper()
	ctx := context.Background()
	rows, err := r.db.Query(ctx, `SELECT stream, seq FROM readings WHERE device_id = 'pi-e2e' ORDER BY stream, seq`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int64][]int64{}
	for rows.Next() {
		var stream, seq int64
		if err := rows.Scan(&stream, &seq); err != nil {
			t.Fatal(err)
		}
		stored[stream] = append(stored[stream], seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	dropped := map[int64][][2]int64{}
	rows, err = r.db.Query(ctx, `SELECT stream, seq_from, seq_to FROM dropped_ranges WHERE device_id = 'pi-e2e'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var stream, from, to int64
		if err := rows.Scan(&stream, &from, &to); err != nil {
			t.Fatal(err)
		}
		dropped[stream] = append(dropped[stream], [2]int64{from, to})
	}
	rows.Close()
	var total, drops, maxLive, lost int64
	for stream, seqs := range stored {
		covered := map[int64]bool{}
		hi := seqs[len(seqs)-1]
		for _, s := range seqs {
			covered[s] = true
		}
		for _, d := range dropped[stream] {
			for s := d[0]; s <= d[1]; s++ {
				covered[s] = true
				drops++
			}
			hi = max(hi, d[1])
		}
		for s := int64(1); s <= hi; s++ {
			if !covered[s] {
				if lost == 0 {
					t.Errorf("stream %016x: seq %d neither stored nor reported dropped (a real gap)", uint64(stream), s)
				}
				lost++
			}
		}
		total += int64(len(seqs))
		if fmt.Sprintf("%016x", uint64(stream)) == r.liveStream {
			maxLive = hi
		}
	}
	var conflicts int64
	if err := r.db.QueryRow(ctx, `SELECT count(*) FROM conflicts`).Scan(&conflicts); err != nil {
		t.Fatal(err)
	}
	if conflicts != 0 {
		t.Errorf("%d conflicts: a seq reached the receiver twice with different contents", conflicts)
	}
	if uint64(maxLive) != liveSeq {
		t.Errorf("highest seq of the live stream %s: %d stored or dropped; want the device's committed seq %d", r.liveStream, maxLive, liveSeq)
	}
	t.Logf("%d readings stored in %d stream(s), %d reported dropped, %d lost, 0 conflicts", total, len(stored), drops, lost)
	return tally{streams: len(stored), stored: total, dropped: drops, lost: lost, sampled: maxLive}
}

// tally is what checkAccounting counted: sampled is the live stream's
// highest seq (every reading it took), lost the seqs neither stored nor
// reported dropped.
type tally struct {
	streams                        int
	sampled, stored, dropped, lost int64
}

// duplicates scrapes the receiver's count of duplicate readings discarded
// since it started.
func (r *rig) duplicates(t testing.TB) int64 {
	t.Helper()
	resp, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Errorf("scraping /metrics: %v", err)
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var total int64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "outpost_receiver_readings_total{") && strings.Contains(line, `result="duplicate"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				total += int64(v)
			}
		}
	}
	return total
}

func TestSteadyStateHTTP(t *testing.T) {
	steadyState(t, "")
}

// TestSteadyStateMQTT: the same through Mosquitto, with the receiver's
// receipts confirming each batch.
func TestSteadyStateMQTT(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	steadyState(t, broker.URL())
}

func steadyState(t *testing.T, broker string) {
	pg := testserver.StartPostgres(t)
	name := "steady_http"
	if broker != "" {
		name = "steady_mqtt"
	}
	r := newRig(t, pg, name, broker)
	r.writeConfig(t, 10) // 10 sensors at 50 readings/s each
	d := r.startDaemon(t)
	time.Sleep(5 * time.Second)
	st, err := r.status(t)
	if err != nil {
		t.Fatal(err)
	}
	if st.Uplink.Sent == 0 || st.Uplink.State == "retrying" {
		t.Errorf("after 5s the uplink has sent %d (state %s, %s)", st.Uplink.Sent, st.Uplink.State, st.Uplink.LastError)
	}
	d.stop(t)
	r.checkAccounting(t, r.drainAll(t).Spool.Seq)
}

// TestKillLoopHTTP SIGKILLs the daemon at random moments while it samples
// and drains, 20 times, restarting it each time; then drains what is left.
// Nothing committed may be lost, nothing stored twice differently.
func TestKillLoopHTTP(t *testing.T) { killLoop(t, "") }

// TestKillLoopMQTT: the same through Mosquitto and receipts.
func TestKillLoopMQTT(t *testing.T) {
	killLoop(t, testserver.StartMosquitto(t, testserver.MosquittoOptions{}).URL())
}

func killLoop(t *testing.T, broker string) {
	pg := testserver.StartPostgres(t)
	name := "killloop_http"
	if broker != "" {
		name = "killloop_mqtt"
	}
	r := newRig(t, pg, name, broker)
	r.writeConfig(t, 10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		d := r.startDaemon(t)
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		d.signal(syscall.SIGKILL)
		if i == 9 { // the receiver too, once, mid-stream
			r.receiver.signal(syscall.SIGKILL)
			r.receiver = startProc(t, r.receiver.log, "outpost-receiver", r.receiver.cmd.Args[1:]...)
		}
	}
	st := r.drainAll(t)
	if st.Spool.Quarantined != 0 {
		t.Errorf("%d spool files quarantined after 20 kill -9s; want none", st.Spool.Quarantined)
	}
	if n := r.checkAccounting(t, st.Spool.Seq).streams; n != 1 {
		t.Errorf("%d streams after kill -9s; want the one stream", n)
	}
}

// TestReceiverOutageHTTP: the receiver is down for a while as readings
// keep coming; when it is back the backlog drains and nothing is missing.
func TestReceiverOutageHTTP(t *testing.T) {
	pg := testserver.StartPostgres(t)
	r := newRig(t, pg, "outage", "")
	r.writeConfig(t, 10)
	d := r.startDaemon(t)
	time.Sleep(2 * time.Second)
	r.receiver.signal(syscall.SIGKILL)
	time.Sleep(5 * time.Second)
	st, err := r.status(t)
	if err != nil {
		t.Fatal(err)
	}
	if st.Uplink.State != "retrying" || st.Spool.Readings < 1000 {
		t.Errorf("during the outage: uplink %s, %d readings waiting; want retrying and a backlog", st.Uplink.State, st.Spool.Readings)
	}
	r.receiver = startProc(t, r.receiver.log, "outpost-receiver", r.receiver.cmd.Args[1:]...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err = r.status(t)
		if err == nil && st.Spool.Readings < 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained within 30s of the receiver's return: %+v", st.Spool)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(t)
	r.checkAccounting(t, r.drainAll(t).Spool.Seq)
}

// TestBrokerKillMQTT: Mosquitto is SIGKILLed mid-drain, losing what it had
// acknowledged but not yet saved; the receiver's receipts make the device
// send those batches again, so nothing is lost.
func TestBrokerKillMQTT(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{AutosaveInterval: time.Hour})
	pg := testserver.StartPostgres(t)
	r := newRig(t, pg, "brokerkill", broker.URL())
	r.writeConfig(t, 10)
	d := r.startDaemon(t)
	for i := range 3 {
		time.Sleep(time.Duration(1500+500*i) * time.Millisecond)
		broker.Kill()
		time.Sleep(500 * time.Millisecond)
		broker.Start()
	}
	time.Sleep(time.Second)
	d.stop(t)
	r.checkAccounting(t, r.drainAll(t).Spool.Seq)
}

// TestCorruptSpoolAtStart: a spool file that cannot be read is quarantined
// at start, a new stream begins, and what it samples arrives.
func TestCorruptSpoolAtStart(t *testing.T) {
	pg := testserver.StartPostgres(t)
	r := newRig(t, pg, "corrupt", "")
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i * 7919)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "spool.db"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	r.writeConfig(t, 10)
	d := r.startDaemon(t)
	time.Sleep(3 * time.Second)
	st, err := r.status(t)
	if err != nil {
		log, _ := os.ReadFile(d.log)
		t.Fatalf("daemon not answering after a corrupt spool: %v\n%s", err, log)
	}
	if st.Spool.Quarantined != 1 || st.Uplink.Sent == 0 {
		t.Errorf("after a corrupt spool: %d quarantined, %d sent; want 1 quarantined and readings flowing", st.Spool.Quarantined, st.Uplink.Sent)
	}
	quarantined, _ := filepath.Glob(filepath.Join(r.dir, "spool.db.quarantined-*"))
	if len(quarantined) != 1 {
		t.Errorf("quarantined files: %v; want the corrupt one kept aside", quarantined)
	}
	d.stop(t)
	r.checkAccounting(t, r.drainAll(t).Spool.Seq)
}

// TestPostgresRestartMidDrain: the receiver's database stops while a
// backlog drains (the receiver answers 503, the device retries) and comes
// back: everything arrives once.
func TestPostgresRestartMidDrain(t *testing.T) {
	pg := testserver.StartPostgres(t)
	r := newRig(t, pg, "pgrestart", "")
	r.writeConfig(t, 10)
	d := r.startDaemon(t)
	time.Sleep(2 * time.Second)
	r.db.Close(context.Background())
	pg.Stop()
	time.Sleep(3 * time.Second)
	pg.Start()
	var err error
	if r.db, err = pgx.Connect(context.Background(), r.dbURL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	d.stop(t)
	r.checkAccounting(t, r.drainAll(t).Spool.Seq)
}

// TestFlakyNetworkHTTP: a fault proxy between the daemon and the receiver
// drops, blackholes, delays and resets connections (some after the
// receiver stored the batch); every reading still arrives, once.
func TestFlakyNetworkHTTP(t *testing.T) {
	pg := testserver.StartPostgres(t)
	r := newRig(t, pg, "flaky", "")
	proxy, err := faultproxy.New(strings.TrimPrefix(r.url, "http://"), 7)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetFaults(faultproxy.Faults{DropMidRequest: 0.1, Blackhole: 0.05, ResetBeforeAnswer: 0.1, Delayed: 0.2, Delay: 50 * time.Millisecond})
	direct := r.url
	r.url = "http://" + proxy.Addr()
	r.writeConfig(t, 10)
	d := r.startDaemon(t)
	// Keep-alive would carry everything on one connection: reset them all
	// every 300ms, so each new one draws a fault (and in-flight requests
	// die at random points).
	for range 27 {
		time.Sleep(300 * time.Millisecond)
		proxy.ResetAll()
	}
	d.stop(t)
	counts, conns := proxy.Counts(), 0
	for _, n := range counts {
		conns += n
	}
	t.Logf("%d connections through the proxy: %v", conns, counts)
	if conns < 20 || counts[faultproxy.ResetBeforeAnswer]+counts[faultproxy.DropMidRequest] == 0 {
		t.Errorf("only %d connections, faults %v: the test lost its teeth", conns, counts)
	}
	r.url = direct
	r.checkAccounting(t, r.drainAll(t).Spool.Seq)
}

// mountTmpfs mounts a tmpfs of size for the test; it skips the test when
// the mount fails (not root, no mount rights), whatever
// OUTPOST_REQUIRE_SERVICES says: that is about servers, not privileges.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a %s tmpfs for the spool (needs root): %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// TestDiskFullHTTP: the spool lives on a 256 KiB file system and the
// receiver is down long enough for it to fill. The daemon keeps running and
// keeps committing new readings: drop_oldest drops the oldest committed
// ones to make room in the file. When the receiver is back, the backlog
// drains and the dropped range reaches the receiver's accounting: every
// seq is stored or reported dropped, some were dropped, none lost.
func TestDiskFullHTTP(t *testing.T) { diskFull(t, nil) }

// TestDiskFullMQTT: the same through Mosquitto, the broker down for the
// outage.
func TestDiskFullMQTT(t *testing.T) {
	diskFull(t, testserver.StartMosquitto(t, testserver.MosquittoOptions{}))
}

func diskFull(t *testing.T, broker *testserver.Mosquitto) {
	pg := testserver.StartPostgres(t)
	name, url, kind := "diskfull_http", "", "http"
	if broker != nil {
		name, url, kind = "diskfull_mqtt", broker.URL(), "mqtt"
	}
	r := newRig(t, pg, name, url)
	r.spoolDir = filepath.Join(r.dir, "small")
	mountTmpfs(t, r.spoolDir, "256k")
	r.writeConfig(t, 10)
	d := r.startDaemon(t)
	time.Sleep(2 * time.Second)
	dups := r.duplicates(t)
	if broker != nil {
		broker.Kill()
	} else {
		r.receiver.signal(syscall.SIGKILL)
	}

	// 10 sensors at 50 readings/s fill the file system within seconds.
	var st daemon.Status
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		st, err = r.status(t)
		if err == nil && st.Spool.DiskFull && st.Spool.Dropped > 0 {
			break
		}
		if time.Now().After(deadline) || d.cmd.ProcessState != nil {
			log, _ := os.ReadFile(d.log)
			t.Fatalf("the spool did not fill and drop within 60s: %+v, %v\n%s", st.Spool, err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	full := st.Spool
	// On the full disk, new readings keep being committed.
	time.Sleep(2 * time.Second)
	st, err := r.status(t)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Spool.DiskFull || st.Spool.CommitFailing || st.Spool.Seq < full.Seq+500 || st.Spool.Dropped <= full.Dropped {
		t.Errorf("2s on a full disk: %+v (before: seq %d, dropped %d); want commits going on (seq +500 or more), more dropped, none failing",
			st.Spool, full.Seq, full.Dropped)
	}
	t.Logf("disk full: file %d bytes, %d readings kept, seq %d -> %d, dropped %d -> %d",
		st.Spool.FileBytes, st.Spool.Readings, full.Seq, st.Spool.Seq, full.Dropped, st.Spool.Dropped)

	if broker != nil {
		broker.Start()
		dups = 0 // the receiver kept running: its final count has them all
	} else {
		r.receiver = startProc(t, r.receiver.log, "outpost-receiver", r.receiver.cmd.Args[1:]...)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		st, err = r.status(t)
		if err == nil && st.Spool.Readings < 500 && st.Uplink.State != "retrying" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained within 60s of the receiver's return: %+v %+v", st.Spool, st.Uplink)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(t)
	if log, _ := os.ReadFile(d.log); !strings.Contains(string(log), "disk full") {
		t.Errorf("the daemon's log does not say the disk was full:\n%s", log)
	}
	final := r.drainAll(t)
	dups += r.duplicates(t)
	tl := r.checkAccounting(t, final.Spool.Seq)
	// (stored + dropped may exceed the seq: a batch the receiver stored
	// as it was killed, unacknowledged, stays in the spool and can be
	// dropped later. It is then both, which is no loss.)
	if tl.dropped == 0 || tl.lost != 0 || tl.streams != 1 {
		t.Errorf("accounting after a full disk: %+v (device seq %d); want one stream, dropped > 0 reported, 0 lost", tl, final.Spool.Seq)
	}
	t.Logf("scenario disk-full/%s: sampled %d, stored %d, dropped reported %d, duplicates %d, lost %d",
		kind, tl.sampled, tl.stored, tl.dropped, dups, tl.lost)
}
