package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	berrors "go.etcd.io/bbolt/errors"
)

// quarantineSuffix precedes the UTC time in a quarantined file's name.
const quarantineSuffix = ".quarantined-"

// isCorrupt says whether an open or commit error means the file is bad
// (quarantine it) rather than the system (report it): a newer format, a
// held lock and operating-system errors are not corruption.
func isCorrupt(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrNewerFormat), errors.Is(err, ErrLocked), errors.Is(err, ErrClosed):
		return false
	case errors.Is(err, ErrCorrupt), errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, errBadValue):
		return true
	}
	var pe *fs.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) || errors.As(err, &errno) {
		return false
	}
	// bbolt's other complaints about a file ("file size too small",
	// "invalid page type", …) are plain errors.
	return true
}

// quarantine renames the spool file aside with a timestamp. The caller has
// closed it.
func (s *Spool) quarantine(cause error) (string, error) {
	path := s.opts.Path
	dst := path + quarantineSuffix + s.opts.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, dst); err != nil {
		return "", fmt.Errorf("spool: quarantine %s after %v: %w", path, cause, err)
	}
	syncDir(filepath.Dir(path))
	s.log.Error("spool: file quarantined, starting a new stream", "path", path, "moved_to", dst, "error", cause)
	return dst, nil
}

// syncDir fsyncs a directory so a rename in it is durable; errors are
// ignored (some file systems refuse to sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// lockHolder names the process holding the flock on path, from
// /proc/locks, or says it is unknown.
func lockHolder(path string) string {
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
