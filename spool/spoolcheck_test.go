package spool

// The check a writer subprocess runs after a crash or a power cut, shared
// by TestCrashKill9 and the power-cut tests.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/spool/boltfile"
)

// salvagedSuffix marks a quarantined file checkSpool has salvaged, so that
// it is salvaged once (a second salvage would bring back what was
// acknowledged since).
const salvagedSuffix = ".salvaged"

// checkSpool is the first part of a writer process asked to check (it runs
// in a subprocess because a process must not mmap files of a FUSE mount it
// serves itself). It opens the spool with fsync on, salvages each
// quarantined file not salvaged yet, reads every stored reading without
// acknowledging it, closes the spool and checks its counters. It prints
//
//	check <stream> <hwm> <readings> <quarantined>  after Open
//	salvaged <readings> <present> <problems>        per file salvaged
//	unsalvageable <error>                           per file Salvage refused
//	run <stream> <from> <to>                        contiguous seqs stored
//	bad <stream> <seq> <value>                      a reading whose value is not its seq
//	counters-off <error>                            meta counters disagree with the file (NoSync only)
//	checked                                         when done
func checkSpool(t *testing.T, path string) error {
	for attempt := 1; ; attempt++ {
		err := checkSpoolOnce(t, path)
		if !errors.Is(err, ErrCorrupt) || attempt == 3 {
			return err
		}
		// A read found the file corrupt: the commit in checkSpoolOnce
		// quarantined it; check the new file, salvaging the old.
	}
}

func checkSpoolOnce(t *testing.T, path string) error {
	s, err := Open(Options{Path: path, Device: "pi-07", CommitInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	st, err := s.Stats()
	if err != nil {
		return err
	}
	fmt.Println("check", uint64(st.Stream), st.Seq, st.Readings, st.Quarantined)
	files, _ := filepath.Glob(path + boltfile.QuarantineSuffix + "*")
	for _, f := range files {
		if strings.HasSuffix(f, salvagedSuffix) {
			continue
		}
		rep, err := s.Salvage(context.Background(), f)
		if err != nil {
			fmt.Println("unsalvageable", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Println("salvaged", rep.Readings, rep.Present, len(rep.Problems))
		}
		if err := os.Rename(f, f+salvagedSuffix); err != nil {
			return err
		}
		boltfile.SyncDir(filepath.Dir(path))
	}
	type run struct{ stream, from, to uint64 }
	var runs []run
	for {
		b, err := s.Next(1000, 1<<20)
		if errors.Is(err, ErrCorrupt) {
			fmt.Println("corrupt-read", strings.ReplaceAll(err.Error(), "\n", " "))
			_ = s.Flush(context.Background()) // the writer quarantines the file
			_ = s.Close(context.Background())
			return err
		}
		if err != nil {
			return err
		}
		if b == nil {
			break
		}
		for _, r := range b.Readings {
			if r.Value != float64(r.Seq) {
				fmt.Println("bad", uint64(r.Stream), r.Seq, r.Value)
			}
			if n := len(runs); n > 0 && runs[n-1].stream == uint64(r.Stream) && runs[n-1].to+1 == r.Seq {
				runs[n-1].to = r.Seq
				continue
			}
			runs = append(runs, run{uint64(r.Stream), r.Seq, r.Seq})
		}
	}
	for _, r := range runs {
		fmt.Println("run", r.stream, r.from, r.to)
	}
	if err := s.Close(context.Background()); err != nil {
		return err
	}
	if err := countersMatch(path); err != nil {
		if os.Getenv(helperNoSyncEnv) != "1" {
			return fmt.Errorf("the meta counters disagree with the file: %w", err)
		}
		fmt.Println("counters-off", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	fmt.Println("checked")
	return nil
}

// spoolCheck is what checkSpool printed.
type spoolCheck struct {
	stream, hwm, readings, quarantined uint64
	runs                               []streamSpan
	bad                                []string
	salvaged, salvagedReadings         int
	unsalvageable                      []string
	countersOff                        bool
	done                               bool
}

func (c *spoolCheck) parse(f []string) {
	u := func(i int) uint64 {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		return v
	}
	switch f[0] {
	case "check":
		c.stream, c.hwm, c.readings, c.quarantined = u(1), u(2), u(3), u(4)
	case "run":
		c.runs = append(c.runs, streamSpan{u(1), seqRange{u(2), u(3)}})
	case "bad":
		c.bad = append(c.bad, strings.Join(f, " "))
	case "salvaged":
		c.salvaged++
		c.salvagedReadings += int(u(1))
	case "unsalvageable":
		c.unsalvageable = append(c.unsalvageable, strings.Join(f[1:], " "))
	case "counters-off":
		c.countersOff = true
	case "checked":
		c.done = true
	}
}
