package record

import (
	"errors"
	"fmt"

	"github.com/outpost-iot/outpost/spool/boltfile"
)

// Sentinel errors. ErrNewerFormat and ErrNotFound are the spool's errors
// of the same names.
var (
	// ErrBadValue is wrapped by the errors of a stored value that does
	// not decode. It wraps boltfile.ErrCorrupt.
	ErrBadValue = fmt.Errorf("malformed reading value: %w", boltfile.ErrCorrupt)
	// ErrNewerFormat is wrapped by Load when the file was written by a
	// newer release.
	ErrNewerFormat = errors.New("spool file has a newer format version")
	// ErrNotFound is wrapped by DeadLetter and TakeDead when there is
	// nothing to act on.
	ErrNotFound = errors.New("not found")
)
