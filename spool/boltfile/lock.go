package boltfile

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// LockHolder names the process holding the flock on path, from
// /proc/locks, or says it is unknown.
func LockHolder(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "holder unknown"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "holder unknown"
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return "holder unknown"
	}
	pid := findLockHolder(string(locks), uint64(st.Dev), uint64(st.Ino))
	switch {
	case pid == 0:
		return "holder unknown"
	case pid == os.Getpid():
		return "held by this process (pid " + strconv.Itoa(pid) + ")"
	}
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if c := strings.TrimSpace(string(comm)); c != "" {
		return fmt.Sprintf("held by pid %d (%s)", pid, c)
	}
	return fmt.Sprintf("held by pid %d", pid)
}

// findLockHolder scans /proc/locks ("1: FLOCK  ADVISORY  WRITE 1234
// 08:01:5678 0 EOF") for a lock on the file with that device and inode.
func findLockHolder(locks string, dev, ino uint64) int {
	major := (dev>>8)&0xfff | (dev>>32)&^uint64(0xfff)
	minor := dev&0xff | (dev>>12)&^uint64(0xff)
	for line := range strings.SplitSeq(locks, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] == "->" {
			continue
		}
		id := strings.Split(f[5], ":")
		if len(id) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(id[0], 16, 64)
		mnr, err2 := strconv.ParseUint(id[1], 16, 64)
		in, err3 := strconv.ParseUint(id[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || maj != major || mnr != minor || in != ino {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil {
			return pid
		}
	}
	return 0
}
