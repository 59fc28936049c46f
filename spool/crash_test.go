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
)

// helperEnv carries the spool path to the writer subprocess of the crash
// test; helperSeedEnv its random seed.
const (
	helperEnv     = "OUTPOST_SPOOL_CRASH_WRITER"
	helperSeedEnv = "OUTPOST_SPOOL_CRASH_SEED"
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
// until it is killed.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("the writer process of TestCrashKill9")
	}
	seed, _ := strconv.ParseUint(os.Getenv(helperSeedEnv), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 1))
	opts := Options{Path: path, Device: "pi-07", CommitInterval: 2 * time.Millisecond, CommitReadings: 64,
		CompactAbove: 32 << 10} // compactions happen, and get killed too
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
			seq, err := s.Append(ctx, r, Clock{})
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

func (r seqSpan) has(seq uint64) bool { return r.from <= seq && seq <= r.to }

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
		acking         []seqSpan
		acked          []seqSpan
		kills          int
		checked        int
		losses         int
		appendLines    int
		compactions    int // most compactions one writer reported
		lastCompacting = -1
	)
	for i := range iterations {
		seed := rng.Uint64()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+path, helperSeedEnv+"="+strconv.FormatUint(seed, 10))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(5+rng.IntN(150)) * time.Millisecond
		sc := bufio.NewScanner(stdout)
		killed := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch f[0] {
			case "open":
				st, _ := strconv.ParseUint(f[1], 10, 64)
				hwm, _ := strconv.ParseUint(f[2], 10, 64)
				if stream != 0 && st != stream {
					t.Fatalf("iteration %d: stream changed %x → %x (the file was quarantined?)", i, stream, st)
				}
				stream = st
				if hwm < committed {
					t.Fatalf("iteration %d: reopened with seq high-water mark %d below committed %d", i, hwm, committed)
				}
				time.AfterFunc(delay, func() { _ = cmd.Process.Kill() })
			case "committed":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				committed = max(committed, seq)
				appendLines++
				c, _ := strconv.Atoi(f[2])
				compactions = max(compactions, c)
				if c > 0 {
					lastCompacting = i
				}
			case "acking", "acked":
				from, _ := strconv.ParseUint(f[2], 10, 64)
				to, _ := strconv.ParseUint(f[3], 10, 64)
				if f[0] == "acking" {
					acking = append(acking, seqSpan{from, to})
				} else {
					acked = append(acked, seqSpan{from, to})
				}
			case "error":
				t.Fatalf("iteration %d: writer: %s", i, sc.Text())
			}
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
			killed = true
			kills++
		}
		if !killed {
			t.Fatalf("iteration %d: writer ended with %v, not SIGKILL; stderr:\n%s", i, err, stderr.String())
		}
		if strings.Contains(stderr.String(), "DATA RACE") {
			t.Fatalf("iteration %d: the race detector reported in the writer:\n%s", i, stderr.String())
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

func slicesAny(spans []seqSpan, seq uint64) bool {
	for _, r := range spans {
		if r.has(seq) {
			return true
		}
	}
	return false
}
