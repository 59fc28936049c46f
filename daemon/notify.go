package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notify sends one sd_notify message; outside systemd it does nothing.
func notify(state string) {
	sd.SdNotify(false, state)
}

// supervise keeps systemd informed: a one-line STATUS= as it changes, and
// WATCHDOG=1 only while the sampler and the spool writer make progress. A
// loop that keeps failing (full disk, every sensor unplugged) is alive and
// says so in STATUS; a loop stuck in a call is not, and systemd restarts
// the daemon.
func (d *Daemon) supervise(ctx context.Context) {
	watchdog, _ := sd.SdWatchdogEnabled(false)
	every := 5 * time.Second
	if watchdog > 0 && watchdog/2 < every {
		every = watchdog / 2
	}
	d.mu.Lock()
	commitEvery := d.cfg.Spool.CommitInterval
	d.mu.Unlock()
	// A loop is stuck when it has not moved for longer than the watchdog
	// (or 30s), and the writer gets three commit intervals besides.
	stuckAfter := max(watchdog, 30*time.Second, 3*commitEvery)
	t := time.NewTicker(every)
	defer t.Stop()
	var w writerProgress
	lastStatus, lastProblem := "", ""
	for {
		problem := d.stuck(stuckAfter, &w)
		switch {
		case problem == "" && watchdog > 0:
			notify("WATCHDOG=1")
		case problem != "" && problem != lastProblem:
			d.log.Error("not petting the watchdog: a loop is stuck", "problem", problem)
		}
		lastProblem = problem
		if line := d.statusLine(problem); line != lastStatus {
			notify("STATUS=" + line)
			lastStatus = line
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writerProgress remembers when the spool writer last committed.
type writerProgress struct {
	commits uint64
	since   time.Time
}

// stuck names a loop that is stuck in a call, or returns "".
func (d *Daemon) stuck(limit time.Duration, w *writerProgress) string {
	d.mu.Lock()
	smp := d.smp
	d.mu.Unlock()
	if smp != nil {
		if names := smp.Stuck(limit); len(names) > 0 {
			return "sensor read hung: " + strings.Join(names, ", ")
		}
	}
	// Stats blocks if the writer holds the spool while wedged; then no
	// WATCHDOG=1 is sent either, which is what we want.
	st, err := d.spool.Stats()
	if err != nil {
		return ""
	}
	now := time.Now()
	if w.since.IsZero() || st.Commits != w.commits || st.Buffered == 0 || st.Failing {
		w.commits, w.since = st.Commits, now
		return ""
	}
	if now.Sub(w.since) > limit {
		return fmt.Sprintf("spool writer: %d readings waiting, no commit for %ds", st.Buffered, int(now.Sub(w.since).Seconds()))
	}
	return ""
}

// statusLine is the one line `systemctl status outpost` shows.
func (d *Daemon) statusLine(problem string) string {
	st := d.Status()
	ok := 0
	for _, s := range st.Sensors {
		if s.State == "ok" {
			ok++
		}
	}
	line := fmt.Sprintf("%d/%d sensors ok; spool %d readings", ok, len(st.Sensors), st.Spool.Readings)
	if st.Spool.CommitFailing {
		line += " (commits failing: " + st.Spool.LastCommitFail + ")"
	}
	if st.Spool.DiskFull {
		line += " (disk full)"
	}
	line += "; uplink " + st.Uplink.State
	if st.Uplink.LastError != "" && st.Uplink.State != "sending" && st.Uplink.State != "idle" {
		line += " (" + st.Uplink.LastError + ")"
	}
	if problem != "" {
		line += "; STUCK: " + problem
	}
	return line
}
