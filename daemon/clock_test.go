package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-iot/outpost/daemon/config"
	"github.com/outpost-iot/outpost/internal/logbuf"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
)

// fakeClock is a clock source whose boot clock runs with real time from
// bootAt, whose wall clock is offset + boot clock, and whose sync state,
// offset and boot id a test sets: the Pi's clocks, under the test's hand.
type fakeClock struct {
	mu     sync.Mutex
	boot   spool.BootID
	origin time.Time     // when the boot clock read bootAt
	bootAt time.Duration //
	offset time.Duration // wall clock minus boot clock
	synced bool
}

// newFakeClock is a boot whose wall clock reads 1970 + boot time, as on a
// Pi with neither RTC nor fake-hwclock, unsynced.
func newFakeClock(id byte, bootAt time.Duration) *fakeClock {
	return &fakeClock{boot: spool.BootID{id, 15: id}, origin: time.Now(), bootAt: bootAt}
}

func (f *fakeClock) Now() (time.Time, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bootAt + time.Since(f.origin)
	return time.Unix(0, int64(f.offset+b)).UTC(), b
}

func (f *fakeClock) Synced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.synced
}

func (f *fakeClock) BootID() (spool.BootID, error) { return f.boot, nil }

// set steps the wall clock to offset + boot clock and sets the sync state,
// at one instant.
func (f *fakeClock) set(offset time.Duration, synced bool) {
	f.mu.Lock()
	f.offset, f.synced = offset, synced
	f.mu.Unlock()
}

func (f *fakeClock) bootNow() time.Duration {
	_, b := f.Now()
	return b
}

var _ clockSource = (*fakeClock)(nil)

// offsetAt is the offset of a wall clock that reads wall at boot time b.
func offsetAt(wall time.Time, b time.Duration) time.Duration {
	return time.Duration(wall.UnixNano()) - b
}

const clockConfig = `device: test-pi
spool: {path: SPOOL, commit_interval: 20ms}
status: {socket: SOCKET}
sensors:
  - {name: demo, driver: sim, interval: 20ms, series: 1, seed: 1}
`

func clockOptions(f *fakeClock) Options {
	return Options{clock: f, clockEvery: 20 * time.Millisecond}
}

// export reads the spool as `outpost spool export` does, through the
// daemon's socket when it runs: readings by seq.
func (d *testDaemon) export(t *testing.T) map[uint64]reading.Reading {
	t.Helper()
	cfg, err := config.Load(d.config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenSpoolClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var buf bytes.Buffer
	if err := c.Export(context.Background(), &buf, 0, false); err != nil {
		t.Fatalf("export: %v", err)
	}
	return decodeAll(t, &buf)
}

func decodeAll(t *testing.T, r io.Reader) map[uint64]reading.Reading {
	t.Helper()
	out := map[uint64]reading.Reading{}
	dec := reading.NewDecoder(r, reading.Limits{})
	for {
		var l reading.Line
		if err := dec.Decode(&l); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("decode export: %v", err)
		}
		if l.Kind == reading.KindReading {
			out[l.Reading.Seq] = l.Reading
		}
	}
}

// waitExport exports until cond holds.
func (d *testDaemon) waitExport(t *testing.T, what string, cond func(map[uint64]reading.Reading) bool) map[uint64]reading.Reading {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rs := d.export(t)
		if cond(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool export never showed %s; %d readings", what, len(rs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *testDaemon) waitLog(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(d.log.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", msg, d.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(rs map[uint64]reading.Reading, f func(reading.Reading) bool) int {
	n := 0
	for _, r := range rs {
		if f(r) {
			n++
		}
	}
	return n
}

func isUnsynced(r reading.Reading) bool { return r.Unsynced }

var syncedAt = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// TestClockSyncCorrectsEarlierReadings: a Pi boots with its clock at 1970
// and samples; NTP then sets the clock. The readings taken before come out
// of the spool at boot time + the offset learnt at the sync, unflagged,
// with the same seqs; the device reports its clock synced.
func TestClockSyncCorrectsEarlierReadings(t *testing.T) {
	clk := newFakeClock(0xa, 7*time.Second)
	d := startDaemonIn(t, t.TempDir(), clockConfig, clockOptions(clk))
	st := waitStatus(t, d.socket(), func(s Status) bool { return s.Clock == "unsynced" && s.Spool.Readings >= 10 })
	var out bytes.Buffer
	if err := WriteStatus(&out, st, time.Now()); err != nil || !strings.Contains(out.String(), "clock unsynced") ||
		!strings.Contains(out.String(), "readings are flagged") {
		t.Errorf("outpost status = %v, %q; want the unsynced clock and what it means", err, out.String())
	}
	before := d.export(t)
	for seq, r := range before {
		if !r.Unsynced || r.Time.Year() != 1970 {
			t.Fatalf("seq %d taken before the sync: %v unsynced %v; want flagged, in 1970", seq, r.Time, r.Unsynced)
		}
	}

	// NTP reaches the Pi: the clock jumps to 2026 and is synchronised.
	syncBoot := clk.bootNow()
	offset := offsetAt(syncedAt, syncBoot)
	clk.set(offset, true)
	waitStatus(t, d.socket(), func(s Status) bool { return s.Clock == "synced" })
	after := d.waitExport(t, "no flagged reading", func(rs map[uint64]reading.Reading) bool { return count(rs, isUnsynced) == 0 })
	d.waitLog(t, "clock synchronised")

	for seq, b := range before {
		a, ok := after[seq]
		// The fake's wall clock read 1970 + boot time, so the boot time of
		// b is b.Time − 1970, and its corrected time that plus the offset.
		want := b.Time.Add(offset)
		if !ok || a.Unsynced || !a.Time.Equal(want) || a.Stream != b.Stream || a.Sensor != b.Sensor || a.Value != b.Value {
			t.Errorf("seq %d after the sync = %+v; want %v, unflagged, same stream and value as %+v", seq, a, want, b)
		}
	}
	for seq, a := range after {
		if a.Time.Before(syncedAt.Add(-time.Minute)) || a.Time.After(syncedAt.Add(time.Minute)) {
			t.Errorf("seq %d at %v; want near %v", seq, a.Time, syncedAt)
		}
	}
	first := uint64(0)
	for seq := range before {
		if first == 0 || seq < first {
			first = seq
		}
	}
	b, a := before[first], after[first]
	bt := time.Duration(b.Time.UnixNano()) // the fake's wall clock read 1970 + boot time
	t.Logf("worked example: seq %d was taken at boot time %v with the clock unsynced and stamped %s (clock unsynced);"+
		" at boot time %v the clock synchronised, reading %s, so the boot's offset (wall − boot time) is %d.%09ds (the wall time at boot time 0: %s);"+
		" the spool hands the reading out as boot time + offset = %s, unflagged, same stream %v and seq %d",
		first, bt, b.Time.Format(time.RFC3339Nano), syncBoot, syncedAt.Format(time.RFC3339Nano), offset/time.Second, offset%time.Second,
		time.Unix(0, int64(offset)).UTC().Format(time.RFC3339Nano), a.Time.Format(time.RFC3339Nano), a.Stream, a.Seq)
}

// TestClockStepWhileSynced: synced readings keep the time they were taken
// at when the clock later steps backwards; the new offset is recorded, and
// readings taken after the clock lost sync (and was then set wrong) are
// corrected with it.
func TestClockStepWhileSynced(t *testing.T) {
	clk := newFakeClock(0xb, 30*time.Second)
	offset1 := offsetAt(syncedAt, clk.bootNow())
	clk.set(offset1, true)
	bootStart := clk.bootNow()
	d := startDaemonIn(t, t.TempDir(), clockConfig, clockOptions(clk))
	waitStatus(t, d.socket(), func(s Status) bool { return s.Clock == "synced" && s.Spool.Readings >= 10 })
	phase1 := d.export(t)

	// NTP steps the clock back an hour while synced.
	offset2 := offset1 - time.Hour
	clk.set(offset2, true)
	d.waitLog(t, "clock stepped")
	d.waitLog(t, "step_s=-3600")
	// The clock loses sync; then something sets it a day ahead.
	clk.set(offset2, false)
	st := waitStatus(t, d.socket(), func(s Status) bool { return s.Clock == "unsynced" })
	lostAt := st.Spool.Seq
	clk.set(offset2+24*time.Hour, false)
	after := d.waitExport(t, "readings taken unsynced", func(rs map[uint64]reading.Reading) bool {
		return count(rs, func(r reading.Reading) bool { return r.Seq > lostAt+5 }) > 0
	})
	bootEnd := clk.bootNow()

	for seq, p := range phase1 {
		if a := after[seq]; a.Unsynced || !a.Time.Equal(p.Time) {
			t.Errorf("seq %d taken synced before the step = %v unsynced %v; want %v as taken", seq, a.Time, a.Unsynced, p.Time)
		}
	}
	n := 0
	for seq, a := range after {
		if seq <= lostAt {
			continue
		}
		n++
		// Corrected with the latest offset: boot time = time − offset2 lies
		// within the boot clock's span of the test; the day-ahead wall
		// clock is nowhere.
		b := time.Duration(a.Time.UnixNano()) - offset2
		if a.Unsynced || b < bootStart || b > bootEnd {
			t.Errorf("seq %d taken unsynced after the step = %v unsynced %v (boot time %v); want boot time + the stepped offset, in [%v, %v]",
				seq, a.Time, a.Unsynced, b, bootStart, bootEnd)
		}
	}
	if n == 0 {
		t.Fatal("no reading taken after the clock lost sync")
	}
}

// TestClockRebootBeforeSync: readings of a boot that ended before any sync
// keep their flag and their time; those of the next boot are corrected
// when it syncs.
func TestClockRebootBeforeSync(t *testing.T) {
	dir := t.TempDir()
	clkA := newFakeClock(0xa, 5*time.Second)
	d := startDaemonIn(t, dir, clockConfig, clockOptions(clkA))
	waitStatus(t, d.socket(), func(s Status) bool { return s.Spool.Readings >= 5 })
	d.stop(t)
	bootA := d.export(t) // the spool file, opened directly
	lastA := uint64(0)
	for seq := range bootA {
		lastA = max(lastA, seq)
	}

	// Power cut, reboot: a new boot id, the boot clock from zero, the wall
	// clock at 1970 again.
	clkB := newFakeClock(0xb, 3*time.Second)
	d = startDaemonIn(t, dir, clockConfig, clockOptions(clkB))
	waitStatus(t, d.socket(), func(s Status) bool { return s.Spool.Seq >= lastA+5 })
	offset := offsetAt(syncedAt, clkB.bootNow())
	clkB.set(offset, true)
	after := d.waitExport(t, "boot B's readings corrected", func(rs map[uint64]reading.Reading) bool {
		return count(rs, func(r reading.Reading) bool { return r.Seq > lastA && r.Unsynced }) == 0
	})
	nB := 0
	for seq, a := range after {
		if seq <= lastA {
			if b := bootA[seq]; !a.Unsynced || !a.Time.Equal(b.Time) {
				t.Errorf("seq %d of the earlier boot = %v unsynced %v; want %v, still flagged", seq, a.Time, a.Unsynced, b.Time)
			}
			continue
		}
		nB++
		if a.Time.Year() != 2026 {
			t.Errorf("seq %d of the synced boot at %v; want corrected to 2026", seq, a.Time)
		}
	}
	if nB < 5 || len(after) < len(bootA)+5 {
		t.Errorf("%d readings of boot B, %d in all; want at least 5 and boot A's %d kept", nB, len(after), len(bootA))
	}
}

// TestClockReadingsSentBeforeSync: what the uplink sent while the clock
// was unsynced went out flagged with the device's wrong time; it is gone
// from the spool, so no correction follows it. The receiver keeps it
// flagged (it cannot know the true time; the flag says so) unless the same
// reading is sent again corrected, which the receiver takes as a
// correction, not a conflict. Readings still queued at the sync go out
// corrected.
func TestClockReadingsSentBeforeSync(t *testing.T) {
	var mu sync.Mutex
	var sent []reading.Reading
	var heartbeats []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		if r.URL.Path == "/v1/status" {
			b, _ := io.ReadAll(body)
			mu.Lock()
			heartbeats = append(heartbeats, string(b))
			mu.Unlock()
			return
		}
		dec := reading.NewDecoder(body, reading.Limits{})
		n := 0
		for {
			var l reading.Line
			if err := dec.Decode(&l); err == io.EOF {
				break
			} else if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if l.Kind == reading.KindReading {
				n++
				mu.Lock()
				sent = append(sent, l.Reading)
				mu.Unlock()
			}
		}
		fmt.Fprintf(w, `{"accepted":%d,"duplicates":0,"conflicts":0,"corrected":0}`, n)
	}))
	defer srv.Close()
	config := clockConfig + "uplink: {http: {url: '" + srv.URL + "'}, heartbeat: 1s}\n"

	clk := newFakeClock(0xc, 9*time.Second)
	d := startDaemonIn(t, t.TempDir(), config, clockOptions(clk))
	snapshot := func() ([]reading.Reading, []string) {
		mu.Lock()
		defer mu.Unlock()
		return append([]reading.Reading(nil), sent...), append([]string(nil), heartbeats...)
	}
	waitFor := func(what string, cond func([]reading.Reading, []string) bool) []reading.Reading {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			rs, hb := snapshot()
			if cond(rs, hb) {
				return rs
			}
			if time.Now().After(deadline) {
				t.Fatalf("the receiver never got %s (%d readings, %d heartbeats)", what, len(rs), len(hb))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	hasClock := func(hb []string, c string) bool {
		for _, h := range hb {
			if strings.Contains(h, `"clock":"`+c+`"`) {
				return true
			}
		}
		return false
	}
	early := waitFor("flagged readings and an unsynced heartbeat", func(rs []reading.Reading, hb []string) bool {
		return len(rs) >= 10 && hasClock(hb, "unsynced")
	})
	clk.set(offsetAt(syncedAt, clk.bootNow()), true)
	d.waitLog(t, "clock offset recorded")
	// Every seq above this one was committed after the offset, so it can
	// only have been read for sending corrected.
	after := waitStatus(t, d.socket(), func(Status) bool { return true }).Spool.Seq
	all := waitFor("readings committed after the offset, and a synced heartbeat", func(rs []reading.Reading, hb []string) bool {
		return count(byseq(rs), func(r reading.Reading) bool { return r.Seq > after+5 }) > 0 && hasClock(hb, "synced")
	})
	for _, r := range early {
		if !r.Unsynced || r.Time.Year() != 1970 {
			t.Errorf("seq %d sent before the sync = %v unsynced %v; want sent flagged with the 1970 time", r.Seq, r.Time, r.Unsynced)
		}
	}
	flaggedAfter, late := 0, 0
	for _, r := range all[len(early):] {
		switch {
		case r.Seq > after:
			late++
			if r.Unsynced || r.Time.Year() != 2026 {
				t.Errorf("seq %d committed after the offset was sent at %v unsynced %v; want 2026, unflagged", r.Seq, r.Time, r.Unsynced)
			}
		case r.Unsynced:
			flaggedAfter++ // stamped or sent before the offset was committed
		}
	}
	t.Logf("%d readings sent flagged before the sync, %d flagged in the moments after, %d committed after the offset, all unflagged",
		len(early), flaggedAfter, late)
}

func byseq(rs []reading.Reading) map[uint64]reading.Reading {
	m := make(map[uint64]reading.Reading, len(rs))
	for _, r := range rs {
		m[r.Seq] = r
	}
	return m
}

func TestTimexSynced(t *testing.T) {
	for _, c := range []struct {
		name     string
		state    int
		status   int32
		maxerror int64
		want     bool
	}{
		{"synced", unix.TIME_OK, 0, 1000, true},
		{"leap pending", unix.TIME_INS, 0, 1000, true},
		{"STA_UNSYNC", unix.TIME_ERROR, unix.STA_UNSYNC, 16_000_000, false},
		{"STA_UNSYNC without TIME_ERROR", unix.TIME_OK, unix.STA_UNSYNC, 1000, false},
		{"maxerror past the limit", unix.TIME_OK, 0, 16_000_000, false},
		{"TIME_ERROR", unix.TIME_ERROR, 0, 1000, false},
	} {
		tx := unix.Timex{Status: c.status}
		reflect.ValueOf(&tx.Maxerror).Elem().SetInt(c.maxerror) // int64, or int32 on 32-bit ARM
		if got := timexSynced(c.state, &tx); got != c.want {
			t.Errorf("%s: timexSynced(%d, status %#x, maxerror %d) = %v; want %v", c.name, c.state, c.status, c.maxerror, got, c.want)
		}
	}
}

func TestSystemClock(t *testing.T) {
	c := systemClock{bootIDFile: "/proc/sys/kernel/random/boot_id", timesyncdFlag: t.TempDir() + "/synchronized"}
	if _, err := c.BootID(); err != nil {
		t.Skipf("no boot id here: %v", err)
	}
	w1, b1 := c.Now()
	time.Sleep(10 * time.Millisecond)
	w2, b2 := c.Now()
	if b1 <= 0 || b2-b1 < 10*time.Millisecond {
		t.Errorf("boot clock %v then %v; want > 0 and advancing", b1, b2)
	}
	if d := (w2.Sub(w1) - (b2 - b1)).Abs(); d > stepThreshold {
		t.Errorf("wall and boot clocks drifted %v apart in 10ms; the step detection would fire", d)
	}
	if err := os.WriteFile(c.timesyncdFlag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !c.Synced() {
		t.Error("Synced() = false with timesyncd's flag file present")
	}
}

// memOffsets is an offsetStore in memory that can fail.
type memOffsets struct {
	offsets map[spool.BootID]time.Duration
	writes  int
	fail    error
}

func (m *memOffsets) BootOffset(b spool.BootID) (time.Duration, bool) {
	o, ok := m.offsets[b]
	return o, ok
}

func (m *memOffsets) SetBootOffset(_ context.Context, b spool.BootID, o time.Duration) error {
	m.writes++
	if m.fail != nil {
		return m.fail
	}
	m.offsets[b] = o
	return nil
}

func TestClockRecordsOffsetOnce(t *testing.T) {
	clk := newFakeClock(0xd, time.Minute)
	store := &memOffsets{offsets: map[spool.BootID]time.Duration{}}
	log := &logbuf.Buffer{}
	c := newClock(clk, store, NewLogger(log, nil, "test"))
	ctx := context.Background()
	c.check(ctx)
	if st := c.Stamp(); !st.Unsynced || store.writes != 0 {
		t.Fatalf("unsynced: stamp %+v, %d writes; want flagged, none", st, store.writes)
	}
	offset := offsetAt(syncedAt, clk.bootNow())
	clk.set(offset, true)
	store.fail = fmt.Errorf("disk full")
	c.check(ctx)
	c.check(ctx)
	if store.writes != 2 || strings.Count(log.String(), "cannot record the clock offset") != 1 {
		t.Errorf("failing store: %d writes, log:\n%s\nwant a retry per check, the failure logged once", store.writes, log.String())
	}
	store.fail = nil
	c.check(ctx)
	if got, ok := store.offsets[clk.boot]; !ok || (got-offset).Abs() > stepThreshold {
		t.Fatalf("recorded offset %v, %v; want %v", got, ok, offset)
	}
	if st := c.Stamp(); st.Unsynced || st.Time.Year() != 2026 {
		t.Errorf("synced stamp = %+v; want unflagged, 2026", st)
	}
	// Jitter below the threshold is no step; nothing more is written.
	clk.set(offset+stepThreshold/2, true)
	c.check(ctx)
	if store.writes != 3 || strings.Contains(log.String(), "clock stepped") {
		t.Errorf("a %v wobble: %d writes; want no new one and no step logged", stepThreshold/2, store.writes)
	}
	// A daemon restarted in the same boot finds the offset recorded.
	c2 := newClock(clk, store, NewLogger(log, nil, "test"))
	c2.check(ctx)
	if store.writes != 3 {
		t.Errorf("restart in the same boot: %d writes; want none new", store.writes)
	}
}
