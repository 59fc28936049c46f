package spool

import (
	"errors"

	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// Sentinel errors, for callers that branch on the condition. Errors returned
// by this package wrap one of them (or an I/O error) with the operation.
var (
	// ErrClosed: the spool was closed.
	ErrClosed = errors.New("spool closed")
	// ErrNewerFormat: the file was written by a newer release. It is left
	// untouched (not quarantined): a downgrade must not lose good data.
	ErrNewerFormat = record.ErrNewerFormat
	// ErrLocked: another process (or another Spool in this one) holds the
	// file's lock past Options.LockTimeout. The message names the holder
	// when /proc/locks shows it.
	ErrLocked = boltfile.ErrLocked
	// ErrFull: policy reject_new and the spool is at its cap; the reading
	// was not accepted (and got no seq).
	ErrFull = errors.New("spool full")
	// ErrCorrupt: the file failed a read or a commit in a way that shows
	// corruption. The spool quarantines it and continues on a new stream.
	ErrCorrupt = boltfile.ErrCorrupt
	// ErrNotCommitted: the commit holding a reading failed (disk full, I/O
	// error). The reading stays buffered and is committed when writing
	// works again.
	ErrNotCommitted = errors.New("not committed yet")
	// ErrNotFound: no dead-letter record at that key.
	ErrNotFound = record.ErrNotFound
)
