package sampler

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bootTime returns CLOCK_BOOTTIME: the time since boot, suspend included.
// It keeps counting across a wall-clock step, so the true time of a reading
// taken before the clock was set can be worked out once it is.
//
// It is a raw system call: clock_gettime never blocks, and a call through
// the runtime's syscall entry wakes the runtime's monitor thread (sysmon)
// whenever it sleeps, which at 10 readings/s was a large part of the idle
// daemon's wake-ups.
func bootTime() time.Duration {
	var ts unix.Timespec
	if _, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_BOOTTIME, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
