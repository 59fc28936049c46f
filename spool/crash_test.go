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
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// helperEnv carries the spool path to the writer subprocess of the crash
// tests; helperSeedEnv its random seed; helperNoSyncEnv=1 makes it run with
// Options.UnsafeNoSync; helperCheckEnv makes it check the file first (see
// checkSpool), and with "only", do nothing else.
const (
	helperEnv       = "OUTPOST_SPOOL_CRASH_WRITER"
	helperSeedEnv   = "OUTPOST_SPOOL_CRASH_SEED"
	helperNoSyncEnv = "OUTPOST_SPOOL_CRASH_NOSYNC"
	helperCheckEnv  = "OUTPOST_SPOOL_CRASH_CHECK"
	// helperBootEnv names a file holding the boot id the writer is to
	// see (the power-cut tests start a new boot at each cut).
	helperBootEnv = "OUTPOST_SPOOL_CRASH_BOOT_ID_FILE"
)

// TestHelperWriter is the crash test's writer process, not a test: it
// appends readings (each one's value is the seq it is expected to get),
// drains and acknowledges some batches, and reports on stdout
//
//	open <stream> <seq>           after Open: the committed high-water mark
//	committed <seq> <compactions> after a commit holding seqs up to <seq> returned
//	acking <stream> <from> <to>   before Ack (these may vanish)
//	acked <stream> <from> <to>    after a commit holding that ack returned
//
// until it is killed (before them, the lines of checkSpool when asked for).
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("the writer process of TestCrashKill9 and TestPowerCut")
	}
	if f := os.Getenv(helperBootEnv); f != "" {
		bootIDFile = f
	}
	if c := os.Getenv(helperCheckEnv); c != "" {
		if err := checkSpool(t, path); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		if c == "only" {
			return
		}
	}
	seed, _ := strconv.ParseUint(os.Getenv(helperSeedEnv), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 1))
	opts := Options{Path: path, Device: "pi-07", CommitInterval: 2 * time.Millisecond, CommitReadings: 64,
		CompactAbove: 32 << 10, // compactions happen, and get killed too
		UnsafeNoSync: os.Getenv(helperNoSyncEnv) == "1"}
	s, err := Open(opts)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	st, err := s.Stats()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("open", uint64(st.Stream), st.Seq)
	ctx := context.Background()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	fail := func(err error) {
		say("error %v", err)
		os.Exit(2)
	}
	go func() { // the drain side
		drng := rand.New(rand.NewPCG(seed, 2))
		for {
			b, err := s.Next(1+drng.IntN(200), 1<<20)
			if errors.Is(err, ErrCorrupt) && opts.UnsafeNoSync {
				// A torn file: the next commit quarantines it, as the
				// daemon's drain would wait for.
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				fail(err)
			}
			if b == nil {
				time.Sleep(time.Millisecond)
				continue
			}
			if drng.IntN(10) < 1 || len(b.Readings) == 0 {
				continue // never acknowledged in this life: comes back after the restart
			}
			say("acking %d %d %d", uint64(b.Stream), b.From, b.To)
			if err := s.Ack(b); err != nil {
				fail(err)
			}
			if drng.IntN(2) == 0 {
				if err := s.Flush(ctx); err != nil {
					fail(err)
				}
				say("acked %d %d %d", uint64(b.Stream), b.From, b.To)
			}
		}
	}()
	next := st.Seq + 1
	for {
		n := 1 + rng.IntN(100)
		var last uint64
		for range n {
			r := sample(int(next))
			seq, err := s.Append(ctx, r, 0)
			if err != nil {
				fail(err)
			}
			if seq != next {
				fail(fmt.Errorf("append got seq %d; want %d", seq, next))
			}
			last = seq
			next++
		}
		if rng.IntN(3) == 0 {
			if err := s.Flush(ctx); err != nil {
				fail(err)
			}
		} else if err := s.WaitCommitted(ctx, last); err != nil {
			fail(err)
		}
		cst, _ := s.Stats()
		say("committed %d %d", last, cst.Compactions)
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
	}
}

func (r seqRange) has(seq uint64) bool { return r.from <= seq && seq <= r.to }

// streamSpan is a seq range of one stream.
type streamSpan struct {
	stream uint64
	seqRange
}

// writerLife is what one writer process reported before it ended.
type writerLife struct {
	opened      bool
	stream, hwm uint64 // from its open line
	committed   uint64 // highest seq it reported committed (in stream)
	commits     int    // committed lines
	compactions int    // most compactions it reported
	acking      []streamSpan
	acked       []streamSpan
	check       *spoolCheck // from checkSpool's lines, when asked for
	errLine     string      // an error line, if it printed one
	killed      bool        // ended by our SIGKILL
	hung        bool        // stopped by the watchdog after writerHangTimeout
	bboltRace   bool        // the race detector reported bbolt racing with itself (see runWriter)
	exit        error       // how it ended
	stderr      string
}

// writerHangTimeout bounds a writer's life: it is killed well before, so
// one still running then is stuck.
const writerHangTimeout = 15 * time.Second

// runWriter runs TestHelperWriter on path and kills it with SIGKILL delay
// after it opened the spool for writing (after its check, if env asks for
// one). A writer that reports an error or exits by itself is not killed.
func runWriter(t *testing.T, path string, seed uint64, delay time.Duration, allowBboltRace bool, env ...string) writerLife {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path, helperSeedEnv+"="+strconv.FormatUint(seed, 10))
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var life writerLife
	// A writer that hangs is stopped with SIGQUIT, which makes it print
	// its goroutines; the caller sees life.hung.
	var hung atomic.Bool
	watchdog := time.AfterFunc(writerHangTimeout, func() {
		hung.Store(true)
		_ = cmd.Process.Signal(syscall.SIGQUIT)
	})
	defer watchdog.Stop()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		u := func(i int) uint64 {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			return v
		}
		switch f[0] {
		case "open":
			life.opened, life.stream, life.hwm = true, u(1), u(2)
			time.AfterFunc(delay, func() { _ = cmd.Process.Kill() })
		case "committed":
			life.committed = max(life.committed, u(1))
			life.commits++
			life.compactions = max(life.compactions, int(u(2)))
		case "acking":
			life.acking = append(life.acking, streamSpan{u(1), seqRange{u(2), u(3)}})
		case "acked":
			life.acked = append(life.acked, streamSpan{u(1), seqRange{u(2), u(3)}})
		case "check", "run", "bad", "salvaged", "unsalvageable", "corrupt-read", "counters-off", "checked":
			if life.check == nil {
				life.check = &spoolCheck{}
			}
			life.check.parse(f)
		case "error":
			life.errLine = sc.Text()
		}
	}
	life.exit = cmd.Wait()
	life.hung = hung.Load()
	var ee *exec.ExitError
	life.killed = errors.As(life.exit, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	life.stderr = stderr.String()
	if strings.Contains(life.stderr, "DATA RACE") {
		// bbolt's open of a corrupt file races with itself: its
		// freelist check goroutine reads a transaction its panic
		// unwinding closes. Only a file fsync-free power cuts corrupted
		// gets there; the caller decides.
		life.bboltRace = strings.Contains(life.stderr, "bbolt.(*DB).freepages")
		if !allowBboltRace || !life.bboltRace {
			t.Fatalf("the race detector reported in the writer:\n%s", life.stderr)
		}
	}
	return life
}

// TestCrashKill9 runs the writer process and kills it with SIGKILL at a
// random moment (in an append, a commit, an ack), many times over the same
// file, reopening it after each kill: every reading reported committed is
// present exactly once unless an ack for it was issued, nothing whose ack
// was committed comes back, seqs stay contiguous, and contents match.
func TestCrashKill9(t *testing.T) {
	iterations := 30
	if emulated || testing.Short() {
		iterations = 12
	}
	path := filepath.Join(t.TempDir(), "spool.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var (
		stream         uint64
		committed      uint64 // highest seq reported committed
		acking         []seqRange
		acked          []seqRange
		kills          int
		checked        int
		losses         int
		appendLines    int
		compactions    int // most compactions one writer reported
		lastCompacting = -1
	)
	for i := range iterations {
		life := runWriter(t, path, rng.Uint64(), time.Duration(5+rng.IntN(150))*time.Millisecond, false)
		if life.errLine != "" {
			t.Fatalf("iteration %d: writer: %s", i, life.errLine)
		}
		if !life.killed {
			t.Fatalf("iteration %d: writer ended with %v, not SIGKILL; stderr:\n%s", i, life.exit, life.stderr)
		}
		kills++
		if life.opened {
			if stream != 0 && life.stream != stream {
				t.Fatalf("iteration %d: stream changed %x → %x (the file was quarantined?)", i, stream, life.stream)
			}
			stream = life.stream
			if life.hwm < committed {
				t.Fatalf("iteration %d: reopened with seq high-water mark %d below committed %d", i, life.hwm, committed)
			}
		}
		committed = max(committed, life.committed)
		appendLines += life.commits
		compactions = max(compactions, life.compactions)
		if life.compactions > 0 {
			lastCompacting = i
		}
		for _, a := range life.acking {
			acking = append(acking, a.seqRange)
		}
		for _, a := range life.acked {
			acked = append(acked, a.seqRange)
		}

		// Reopen and check the file.
		s, err := Open(Options{Path: path, Device: "pi-07", CommitInterval: time.Hour})
		if err != nil {
			t.Fatalf("iteration %d: reopen: %v", i, err)
		}
		st, _ := s.Stats()
		if uint64(st.Stream) != stream || st.Quarantined != 0 {
			t.Fatalf("iteration %d: after kill stream %v, quarantined %d; want %x, 0", i, st.Stream, st.Quarantined, stream)
		}
		present := map[uint64]bool{}
		for _, b := range drainAll(t, s) {
			for _, r := range b.Readings {
				if present[r.Seq] {
					t.Fatalf("iteration %d: seq %d returned twice", i, r.Seq)
				}
				present[r.Seq] = true
				if r.Value != float64(r.Seq) {
					t.Fatalf("iteration %d: seq %d holds value %v; want %d", i, r.Seq, r.Value, r.Seq)
				}
				if r.Seq > st.Seq {
					t.Fatalf("iteration %d: seq %d above the high-water mark %d", i, r.Seq, st.Seq)
				}
			}
		}
		if uint64(len(present)) != st.Readings {
			t.Fatalf("iteration %d: meta counts %d readings; %d present", i, st.Readings, len(present))
		}
		if st.Seq < committed {
			t.Fatalf("iteration %d: high-water mark %d below committed %d", i, st.Seq, committed)
		}
		for seq := uint64(1); seq <= st.Seq; seq++ {
			inAcking := slicesAny(acking, seq)
			switch {
			case present[seq] && slicesAny(acked, seq):
				t.Errorf("iteration %d: seq %d came back after its ack was committed", i, seq)
			case !present[seq] && !inAcking && seq <= committed:
				t.Errorf("iteration %d: committed seq %d lost", i, seq)
				losses++
			case !present[seq] && !inAcking:
				// Above what the writer reported: committed but not reported
				// yet would be present, so a gap here is a lost seq.
				t.Errorf("iteration %d: seq %d missing below the high-water mark %d", i, seq, st.Seq)
				losses++
			}
			if seq <= committed {
				checked++
			}
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkCounters(t, path)
		if _, err := os.Stat(compactPath(path)); err == nil {
			t.Fatalf("iteration %d: a compaction's temporary file survived the reopen", i)
		}
		if t.Failed() {
			return
		}
	}
	if appendLines == 0 || committed == 0 {
		t.Fatalf("writers never reported a commit (%d lines)", appendLines)
	}
	t.Logf("crash test: %d iterations, %d SIGKILLs, %d committed seqs, %d reading checks, %d acks issued (%d committed), %d losses; up to %d compactions per writer (last in iteration %d)",
		iterations, kills, committed, checked, len(acking), len(acked), losses, compactions, lastCompacting)
}

func slicesAny(spans []seqRange, seq uint64) bool {
	for _, r := range spans {
		if r.has(seq) {
			return true
		}
	}
	return false
}
