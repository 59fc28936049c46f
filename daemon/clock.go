package daemon

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/outpost-iot/outpost/daemon/sampler"
	"github.com/outpost-iot/outpost/spool"
)

// A Raspberry Pi has no battery-backed clock: after a power cut it boots
// with the time of its last shutdown (fake-hwclock) or 1970, and learns the
// real time only when NTP reaches it. The daemon stamps every reading with
// the wall clock, CLOCK_BOOTTIME (which a step of the wall clock does not
// move) and whether the wall clock was synchronised. Once it is, the
// boot's offset (wall clock minus CLOCK_BOOTTIME) goes into the spool's
// boots table, and the spool hands out the readings of that boot taken
// unsynced with the time CLOCK_BOOTTIME + offset (spool.SetBootOffset).
//
// Linux slews CLOCK_REALTIME and CLOCK_BOOTTIME alike, so their difference
// moves only when the wall clock is stepped (or the board resumes from
// suspend, which a Pi does not). A step while synchronised records the new
// offset: readings taken unsynced are corrected with the latest one.
// Readings taken synced before the step keep their time: the device
// believed it, the receiver may have stored it already, and a synced
// reading sent again with another time would be a conflict there.

// clockSource is what the daemon reads of the device's clocks: the system's
// in the field (systemClock), a fake in tests. All that follows from it is
// the same code either way.
type clockSource interface {
	// Now reads the wall clock and CLOCK_BOOTTIME at one moment.
	Now() (wall time.Time, boot time.Duration)
	// Synced reports whether the wall clock is synchronised now.
	Synced() bool
	// BootID identifies the running boot.
	BootID() (spool.BootID, error)
}

// stepThreshold is how far the offset may move before the daemon takes it
// for a step of the clock and records it again. Reading the two clocks
// jitters by microseconds; systemd-timesyncd steps at 0.4 s and chrony's
// makestep is usually 0.1–1 s, so a 1 s threshold would miss real steps.
const stepThreshold = 100 * time.Millisecond

// systemClock is the clock source of a live system.
type systemClock struct {
	bootIDFile    string // /proc/sys/kernel/random/boot_id
	timesyncdFlag string // /run/systemd/timesync/synchronized
}

func (c systemClock) Now() (time.Time, time.Duration) {
	// CLOCK_BOOTTIME on both sides of the wall clock: keep the tightest
	// of a few tries, so a preemption between the reads is not a step.
	var wall time.Time
	var boot time.Duration
	best := time.Duration(1<<63 - 1)
	for range 3 {
		b1 := bootTime()
		w := time.Now()
		b2 := bootTime()
		if d := b2 - b1; d < best {
			best, wall, boot = d, w, b1+d/2
		}
		if best < 50*time.Microsecond {
			break
		}
	}
	return wall, boot
}

// Synced is the kernel's view (set by systemd-timesyncd, chrony and ntpd
// alike), or timesyncd's flag file where adjtimex is not allowed.
func (c systemClock) Synced() bool {
	return kernelClockSynced() || fileExists(c.timesyncdFlag)
}

func (c systemClock) BootID() (spool.BootID, error) { return spool.ReadBootID(c.bootIDFile) }

// bootTime returns CLOCK_BOOTTIME: the time since boot, suspend included.
// A raw system call, as the sampler's: clock_gettime never blocks, and the
// runtime's syscall entry would wake its monitor thread each time.
func bootTime() time.Duration {
	var ts unix.Timespec
	if _, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_BOOTTIME, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// kernelClockSynced reads, never sets, the kernel's time status.
func kernelClockSynced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	return err == nil && timexSynced(state, &tx)
}

// maxErrorLimit is the kernel's NTP_PHASE_LIMIT in µs: past it the kernel
// sets STA_UNSYNC by itself (after ~9 h without an NTP update).
const maxErrorLimit = 16_000_000

// timexSynced interprets an adjtimex answer: synchronised unless the
// kernel says TIME_ERROR, STA_UNSYNC is set, or the maximum error has
// grown past the limit.
func timexSynced(state int, tx *unix.Timex) bool {
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0 && tx.Maxerror < maxErrorLimit
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// offsetStore is what the clock needs of the spool: the boots table's
// offsets.
type offsetStore interface {
	BootOffset(boot spool.BootID) (time.Duration, bool)
	SetBootOffset(ctx context.Context, boot spool.BootID, offset time.Duration) error
}

// clock follows the device's clocks for the daemon: it stamps the
// sampler's readings, notices when the wall clock becomes synchronised or
// steps, and then records the boot's offset in the spool.
type clock struct {
	src   clockSource
	boot  spool.BootID
	store offsetStore // the spool; set before the first check
	log   *slog.Logger

	synced atomic.Bool

	mu      sync.Mutex // guards what follows; check runs in one goroutine
	known   bool
	offset  time.Duration // the boot's latest synced offset, when known
	failing bool          // recording the offset fails
}

func newClock(src clockSource, store offsetStore, log *slog.Logger) *clock {
	c := &clock{src: src, store: store, log: log}
	boot, err := src.BootID()
	if err != nil {
		log.Warn("no boot id; readings taken before the clock is synchronised cannot be corrected", "err", err)
	}
	c.boot = boot
	return c
}

// Stamp implements sampler.Clock.
func (c *clock) Stamp() sampler.Stamp {
	wall, boot := c.src.Now()
	return sampler.Stamp{Time: wall, BootTime: boot, Unsynced: !c.synced.Load()}
}

func (c *clock) String() string {
	if c.synced.Load() {
		return "synced"
	}
	return "unsynced"
}

// check observes the clocks and makes sure the spool holds the boot's
// latest offset (retrying a write that failed).
func (c *clock) check(ctx context.Context) {
	c.observe()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known {
		c.record(ctx)
	}
}

// observe reads the clocks: on the first sync of the boot, and on a step
// while synchronised, it logs and takes the new offset. It does no I/O
// but the clock reads.
func (c *clock) observe() {
	synced := c.src.Synced()
	wall, boot := c.src.Now()
	was := c.synced.Swap(synced)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !synced {
		if was {
			c.log.Warn("clock no longer synchronised; readings are flagged until it is again")
		}
		return
	}
	off := time.Duration(wall.UnixNano()) - boot
	switch {
	case !c.known:
		c.log.Info("clock synchronised", "time", wall.UTC().Format(time.RFC3339Nano), "boot_time_s", boot.Seconds())
		c.known, c.offset = true, off
	case abs(off-c.offset) > stepThreshold:
		c.log.Warn("clock stepped", "step_s", (off - c.offset).Seconds(), "time", wall.UTC().Format(time.RFC3339Nano))
		c.offset = off
	case !was:
		c.log.Info("clock synchronised again")
	}
}

// record writes the latest offset to the spool unless it is there. c.mu is
// held.
func (c *clock) record(ctx context.Context) {
	if c.boot == (spool.BootID{}) || c.store == nil {
		return
	}
	if off, ok := c.store.BootOffset(c.boot); ok && abs(off-c.offset) <= stepThreshold {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.store.SetBootOffset(ctx, c.boot, c.offset); err != nil {
		if !c.failing {
			c.log.Error("cannot record the clock offset; readings taken unsynced stay flagged until it is", "err", err)
		}
		c.failing = true
		return
	}
	// Once per sync or step: readings taken unsynced in this boot are sent
	// corrected from now on.
	c.log.Info("clock offset recorded; readings taken unsynced in this boot are sent corrected", "boot", c.boot.String())
	c.failing = false
}

// watch checks the clocks at once and then every interval until ctx ends.
func (c *clock) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		c.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// Interface guards.
var (
	_ clockSource   = systemClock{}
	_ sampler.Clock = (*clock)(nil)
	_ offsetStore   = (*spool.Spool)(nil)
)
