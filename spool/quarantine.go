package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/outpost-iot/outpost/spool/boltfile"
)

// isCorrupt says whether an open or commit error means the file is bad
// (quarantine it) rather than the system (report it): a newer format, a
// held lock and operating-system errors are not corruption.
func isCorrupt(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrNewerFormat), errors.Is(err, ErrLocked), errors.Is(err, ErrClosed):
		return false
	case errors.Is(err, ErrCorrupt), errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch):
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
	dst, err := boltfile.Quarantine(path, s.opts.Now())
	if err != nil {
		return "", fmt.Errorf("spool: quarantine %s after %v: %w", path, cause, err)
	}
	s.quarantineJournal(dst)
	s.log.Error("spool: file quarantined, starting a new stream", "path", path, "moved_to", dst, "err", cause)
	return dst, nil
}
