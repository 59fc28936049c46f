package boltfile

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// SyncDir fsyncs a directory so a rename in it is durable; errors are
// ignored (some file systems refuse to sync a directory).
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// ReadAhead asks the kernel to read the whole file into the page cache in
// the background, so bbolt's page-by-page walk of a cold file does not
// wait for the disk one page at a time.
func ReadAhead(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED)
}

// Room says, where fallocate is not supported, whether the file system
// holding dir has need bytes free for an unprivileged process: nil, or
// ENOSPC.
func Room(dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if int64(st.Bavail)*int64(st.Bsize) < need {
		return syscall.ENOSPC
	}
	return nil
}

// Preallocate backs the bytes [from, to) of the file at path with disk
// blocks, growing the file if needed. (bbolt grows its file with ftruncate,
// which leaves holes: a write into a hole needs a block too.) The file is
// opened anew: bbolt does not share its descriptor, and the spool's
// lock is the writer's own.
func Preallocate(path string, from, to int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, from, to-from); err != nil {
		return &os.PathError{Op: "fallocate", Path: path, Err: err}
	}
	return nil
}
