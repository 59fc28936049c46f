package daemon

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// clockState says whether the system clock is synchronised: the kernel's
// adjtimex status (set by systemd-timesyncd, chrony and ntpd alike), or
// systemd-timesyncd's flag file.
type clockState struct {
	synced atomic.Bool
}

// timesyncdFlag exists once systemd-timesyncd has synchronised the clock.
const timesyncdFlag = "/run/systemd/timesync/synchronized"

func (c *clockState) refresh() {
	c.synced.Store(kernelClockSynced() || fileExists(timesyncdFlag))
}

func (c *clockState) String() string {
	if c.synced.Load() {
		return "synced"
	}
	return "unsynced"
}

// kernelClockSynced reads, never sets, the kernel's time status.
func kernelClockSynced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	return err == nil && state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
