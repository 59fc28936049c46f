package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// takerEnv carries the spool path to TestHelperTaker; takerModeEnv says
// what it does ("take", "drain" or "dump"); takerLifeEnv numbers the
// process (the values it writes encode it); takerIntervalEnv is its
// commit interval.
const (
	takerEnv         = "OUTPOST_SPOOL_TAKER"
	takerModeEnv     = "OUTPOST_SPOOL_TAKER_MODE"
	takerLifeEnv     = "OUTPOST_SPOOL_TAKER_LIFE"
	takerIntervalEnv = "OUTPOST_SPOOL_TAKER_INTERVAL"
)

// takerValue is the value a taker of life writes at seq: each seq's
// contents differ from one life to the next.
func takerValue(life int, seq uint64) float64 { return float64(life)*1e7 + float64(seq) }

// TestHelperTaker is the child process of the crash tests below, not a
// test. In mode "take" it samples as the daemon does (10 sensors at
// 10 Hz, the daemon's commit interval unless told) and prints
//
//	open <stream> <seq>    after Open
//	took <seq> <value>     after Append returned (it handed that over)
//	committed <seq>        the committed high-water mark, now and then
//
// In mode "drain" it drains as the uplink does (4 batches of 500 in
// flight) and prints "handed <from> <to>" after Next and "acked <from>
// <to>" after Ack returned. In mode "dump" it prints "have <seq> <value>"
// for every stored reading, "hwm <seq> <stream>", then "done", and exits.
// Output is a pipe: what was written before a SIGKILL stays readable.
func TestHelperTaker(t *testing.T) {
	path := os.Getenv(takerEnv)
	if path == "" {
		t.Skip("the child process of the kill -9 tests")
	}
	life, _ := strconv.Atoi(os.Getenv(takerLifeEnv))
	interval := time.Second
	if v := os.Getenv(takerIntervalEnv); v != "" {
		interval, _ = time.ParseDuration(v)
	}
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	s, err := Open(Options{Path: path, Device: "pi-07", CommitInterval: interval})
	if err != nil {
		fail(err)
	}
	st, err := s.Stats()
	if err != nil {
		fail(err)
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	say("open %d %d", uint64(st.Stream), st.Seq)
	ctx := context.Background()
	switch os.Getenv(takerModeEnv) {
	case "dump":
		for _, b := range drainAll(t, s) {
			for _, r := range b.Readings {
				say("have %d %v", r.Seq, r.Value)
			}
		}
		say("hwm %d %d", st.Seq, uint64(st.Stream))
		if err := s.Close(ctx); err != nil {
			fail(err)
		}
		say("done")
		return
	case "drain":
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					b, err := s.Next(500, 1<<20)
					if err != nil {
						fail(err)
					}
					if b == nil {
						time.Sleep(time.Millisecond)
						continue
					}
					say("handed %d %d", b.From, b.To)
					time.Sleep(10 * time.Millisecond) // the round trip to the receiver
					if err := s.Ack(b); err != nil {
						fail(err)
					}
					say("acked %d %d", b.From, b.To)
				}
			})
		}
		wg.Wait()
	case "take":
		go func() {
			for {
				time.Sleep(50 * time.Millisecond)
				if st, err := s.Stats(); err == nil {
					say("committed %d", st.Seq)
				}
			}
		}()
		tick := time.NewTicker(10 * time.Millisecond)
		for i := 0; ; i++ {
			<-tick.C
			// The sampler's readings, one of 10 sensors at a time.
			r := reading.Reading{Sensor: fmt.Sprintf("greenhouse.s%d", i%10), Unit: "C", Time: time.Now().UTC()}
			st, _ := s.Stats()
			r.Value = takerValue(life, st.Seq+uint64(st.Buffered)+1)
			seq, err := s.Append(ctx, r, 0)
			if err != nil {
				fail(err)
			}
			if r.Value != takerValue(life, seq) {
				fail(fmt.Errorf("append gave seq %d; value %v written for another", seq, r.Value))
			}
			say("took %d %v", seq, r.Value)
		}
	}
}

// takerLife is what one child process printed.
type takerLife struct {
	opened    bool
	stream    uint64
	openSeq   uint64
	took      map[uint64]float64
	committed uint64
	handed    []seqRange
	acked     []seqRange
	have      map[uint64]float64
	hwm       uint64
	done      bool
	errLine   string
	killed    bool
	stderr    string
}

// runTaker runs TestHelperTaker in mode on path as life, and kills it with
// SIGKILL delay after it opened the spool (delay 0: it is not killed).
func runTaker(t *testing.T, path, mode string, life int, interval, delay time.Duration) takerLife {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTaker$", "-test.count=1")
	cmd.Env = append(os.Environ(), takerEnv+"="+path, takerModeEnv+"="+mode,
		takerLifeEnv+"="+strconv.Itoa(life), takerIntervalEnv+"="+interval.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(writerHangTimeout, func() { _ = cmd.Process.Signal(syscall.SIGQUIT) })
	defer watchdog.Stop()
	l := takerLife{took: map[uint64]float64{}, have: map[uint64]float64{}}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		u := func(i int) uint64 {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			return v
		}
		fl := func(i int) float64 {
			v, _ := strconv.ParseFloat(f[i], 64)
			return v
		}
		switch f[0] {
		case "open":
			l.opened, l.stream, l.openSeq = true, u(1), u(2)
			if delay > 0 {
				time.AfterFunc(delay, func() { _ = cmd.Process.Kill() })
			}
		case "took":
			l.took[u(1)] = fl(2)
		case "committed":
			l.committed = max(l.committed, u(1))
		case "handed":
			l.handed = append(l.handed, seqRange{u(1), u(2)})
		case "acked":
			l.acked = append(l.acked, seqRange{u(1), u(2)})
		case "have":
			l.have[u(1)] = fl(2)
		case "hwm":
			l.hwm, l.stream = u(1), u(2)
		case "done":
			l.done = true
		case "error":
			l.errLine = sc.Text()
		}
	}
	exit := cmd.Wait()
	var ee *exec.ExitError
	l.killed = errors.As(exit, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	l.stderr = stderr.String()
	if l.errLine != "" || (delay > 0 && !l.killed) || (delay == 0 && exit != nil) {
		t.Fatalf("%s child (life %d) ended with %v: %s\n%s", mode, life, exit, l.errLine, l.stderr)
	}
	return l
}

// TestCrashKill9NothingTakenLost proves that a crash of the process loses
// no reading it took: a child samples at 100 readings/s with the daemon's
// 1 s commit interval and logs each reading after Append returned; it is
// SIGKILLed at a random moment, many times over one file. After each kill
// the file is reopened: every reading any child handed over is there,
// with the contents it handed over. (Without the pre-commit journal the
// readings of the last commit interval are lost.)
func TestCrashKill9NothingTakenLost(t *testing.T) {
	kills := 8
	if emulated || testing.Short() {
		kills = 4
	}
	path := filepath.Join(t.TempDir(), "spool.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 25))
	took := map[uint64]float64{} // every reading handed over, by seq
	var stream uint64
	var lostTotal, tookTotal, uncommitted int
	var perKill []int
	for life := 1; life <= kills; life++ {
		l := runTaker(t, path, "take", life, time.Second, time.Duration(300+rng.IntN(1700))*time.Millisecond)
		if stream != 0 && l.stream != stream {
			t.Fatalf("life %d: stream changed %x → %x", life, stream, l.stream)
		}
		stream = l.stream
		for seq, v := range l.took {
			took[seq] = v
			if seq > l.committed {
				uncommitted++
			}
		}
		tookTotal += len(l.took)
		d := runTaker(t, path, "dump", 0, time.Hour, 0)
		lost := 0
		for seq, v := range took {
			got, ok := d.have[seq]
			switch {
			case !ok:
				lost++
				if lost <= 5 {
					t.Errorf("life %d: seq %d (value %v) was handed over and is lost", life, seq, v)
				}
			case got != v:
				t.Errorf("life %d: seq %d holds %v; %v was handed over", life, seq, got, v)
			}
		}
		for seq, v := range d.have {
			if _, ok := took[seq]; !ok && v != takerValue(life, seq) {
				t.Errorf("life %d: seq %d holds %v, which no child took", life, seq, v)
			}
		}
		perKill = append(perKill, lost)
		lostTotal += lost
		// The dump committed what it replayed: forget nothing, but take
		// readings seen in the file as handed over too (their seq is
		// fixed now).
		for seq, v := range d.have {
			took[seq] = v
		}
	}
	t.Logf("kill -9 while sampling: %d kills, %d readings handed over (%d of them not committed when their child was killed), lost per kill %v, %d lost in all",
		kills, tookTotal, uncommitted, perKill, lostTotal)
	if uncommitted == 0 {
		t.Fatalf("no kill came before a commit: the test tested nothing")
	}
}

// TestCrashKill9MidDrainResends counts what a kill -9 in the middle of a
// drain (4 batches of 500 in flight) makes the spool hand out again after
// the restart, among the readings whose Ack had returned: the receiver has
// them, so each is a resend. Readings in flight at the kill come again
// too, as they must; they are counted apart.
func TestCrashKill9MidDrainResends(t *testing.T) {
	const backlog = 100000
	kills := 3
	if emulated || testing.Short() {
		kills = 2
	}
	dir := t.TempDir()
	opts := testOptions(dir)
	opts.CommitReadings = 5000
	s := mustOpenNoCleanup(t, opts)
	ctx := context.Background()
	for i := range backlog {
		if _, err := s.Append(ctx, sample(i+1), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 26))
	var resentPerKill, inFlightPerKill []int
	worst := 0
	for k := range kills {
		l := runTaker(t, opts.Path, "drain", 0, time.Second, time.Duration(100+rng.IntN(200))*time.Millisecond)
		d := runTaker(t, opts.Path, "dump", 0, time.Hour, 0)
		if len(l.acked) == 0 {
			t.Fatalf("kill %d: the drain acknowledged nothing before the kill", k)
		}
		resent := 0
		for _, a := range l.acked {
			for seq := a.from; seq <= a.to; seq++ {
				if _, ok := d.have[seq]; ok {
					resent++
				}
			}
		}
		inFlight := 0
		for _, h := range l.handed {
			if slicesAny(l.acked, h.from) {
				continue
			}
			for seq := h.from; seq <= h.to; seq++ {
				if _, ok := d.have[seq]; ok {
					inFlight++
				}
			}
		}
		resentPerKill = append(resentPerKill, resent)
		inFlightPerKill = append(inFlightPerKill, inFlight)
		worst = max(worst, resent)
		if len(d.have) == 0 {
			break // drained: nothing left to kill in
		}
	}
	t.Logf("kill -9 mid-drain: acknowledged readings handed out again per kill %v (worst %d); in flight at the kill, sent again as they must be: %v",
		resentPerKill, worst, inFlightPerKill)
	if worst > 1000 {
		t.Fatalf("a kill mid-drain resends %d acknowledged readings; want at most 1000", worst)
	}
}

// mustOpenNoCleanup opens a spool the test closes itself.
func mustOpenNoCleanup(t *testing.T, opts Options) *Spool {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
