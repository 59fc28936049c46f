//go:build e2e && !arm

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/powercut"
	"github.com/outpost-iot/outpost/internal/testserver"
)

// TestPowerCutLoopHTTP cuts the daemon's power 10 times while it samples
// (10 sim sensors at 50 readings/s each) and drains over HTTP: SIGKILL, then
// a power cut of its spool's file system (dropping every unsynced write,
// or tearing them), then a restart. At the end every seq of the one stream
// is stored or reported dropped, nothing reached the receiver twice with
// different contents, and around each cut the readings lost are only those
// of the commit window: the last stored reading before a kill is at most
// one commit interval (plus the time a commit takes under load) older
// than the kill.
func TestPowerCutLoopHTTP(t *testing.T) {
	fsys := powercut.MountT(t)
	pg := testserver.StartPostgres(t)
	r := newRig(t, pg, "powercut_http", "")
	r.spoolDir = fsys.Mountpoint()
	r.writeConfig(t, 10)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	const cycles = 10
	var starts, kills []time.Time
	var pagesDropped, pagesKept int
	for i := range cycles {
		starts = append(starts, time.Now())
		d := r.startDaemon(t)
		time.Sleep(time.Duration(800+rng.IntN(1200)) * time.Millisecond)
		kills = append(kills, time.Now())
		d.signal(syscall.SIGKILL) // and reaped, so nothing maps the file
		mode := powercut.DropAll
		if i%2 == 1 {
			mode = powercut.Torn
		}
		rep, err := fsys.Cut(mode, rng.Uint64())
		if err != nil {
			t.Fatalf("cut %d: %v", i, err)
		}
		pagesDropped += rep.PagesDropped
		pagesKept += rep.PagesKept
	}
	st := r.drainAll(t)
	if st.Spool.Quarantined != 0 {
		t.Errorf("%d spool files quarantined after %d power cuts; want none", st.Spool.Quarantined, cycles)
	}
	if n := r.checkAccounting(t, st.Spool.Seq).streams; n != 1 {
		t.Errorf("%d streams after power cuts; want the one stream", n)
	}

	// The readings lost at each cut: those sampled after the last one
	// stored before the kill. Only uncommitted readings may go, so that
	// window is one commit interval, plus the commit's own time. The gap
	// in device timestamps adds the restart: from the kill to the first
	// reading of the next daemon.
	ctx := context.Background()
	const slack = 800 * time.Millisecond // a commit's fsyncs on a loaded, shared 2-core box, and the sampler's lag
	for i, kill := range kills {
		var before time.Time
		err := r.db.QueryRow(ctx, `SELECT max(ts) FROM readings WHERE device_id = 'pi-e2e' AND ts <= $1`, kill).Scan(&before)
		if err != nil {
			t.Fatalf("cut %d: %v", i, err)
		}
		lost := kill.Sub(before)
		gap := "–"
		if i+1 < len(starts) {
			var after time.Time
			err = r.db.QueryRow(ctx, `SELECT min(ts) FROM readings WHERE device_id = 'pi-e2e' AND ts > $1`, kill).Scan(&after)
			if err != nil {
				t.Fatalf("cut %d: %v", i, err)
			}
			gap = fmt.Sprintf("%d ms (restart %d ms)", after.Sub(before).Milliseconds(), starts[i+1].Sub(kill).Milliseconds())
		}
		t.Logf("cut %2d: last stored reading %4d ms before the kill; gap in device timestamps %s", i, lost.Milliseconds(), gap)
		if lost > commitInterval+slack {
			t.Errorf("cut %d: the last stored reading is %v older than the kill; want at most the commit interval %v (+%v)", i, lost, commitInterval, slack)
		}
	}
	t.Logf("%d power cuts (%d drop-all, %d torn; %d unsynced pages dropped, %d kept)", cycles, (cycles+1)/2, cycles/2, pagesDropped, pagesKept)
}
