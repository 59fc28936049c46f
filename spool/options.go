package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// Defaults for the zero values of Options. CommitInterval has no default
// here: zero means "commit every append"; the daemon's config defaults it to
// DefaultCommitInterval.
const (
	DefaultCommitInterval      = time.Second
	DefaultCommitReadings      = 1000
	DefaultMaxBufferedReadings = 10000
	DefaultMaxBytes            = 512 << 20
	DefaultLockTimeout         = 5 * time.Second

	// maxBytes32 bounds MaxBytes on a 32-bit address space: a file this
	// size maps 1 GiB, and a compaction maps a second file beside it.
	maxBytes32 = 768 << 20
)

// Policy says what happens when the spool reaches a cap.
type Policy uint8

const (
	// DropOldest deletes the oldest readings, counts them and keeps their
	// seq ranges for the uplink to report (the default).
	DropOldest Policy = iota
	// RejectNew refuses new readings with ErrFull.
	RejectNew
)

func (p Policy) String() string {
	switch p {
	case DropOldest:
		return "drop_oldest"
	case RejectNew:
		return "reject_new"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy parses the config spelling of a policy.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "drop_oldest", "":
		return DropOldest, nil
	case "reject_new":
		return RejectNew, nil
	}
	return 0, fmt.Errorf("unknown spool policy %q (want drop_oldest or reject_new)", s)
}

// Options configure a spool. Path and Device are required.
type Options struct {
	Path   string // the bbolt file
	Device string // filled into every reading handed to the drain side
	// Boot is the boot the spool runs in (ReadBootID of the kernel's
	// /proc/sys/kernel/random/boot_id): the boot of the CLOCK_BOOTTIME
	// that Append takes with each reading. Zero: unknown, and readings
	// are stored without a boot clock.
	Boot BootID

	// CommitInterval is the group-commit period; 0 commits every append
	// before Append returns.
	CommitInterval time.Duration
	// CommitReadings commits early once this many readings are buffered
	// (default DefaultCommitReadings, at most MaxBufferedReadings).
	CommitReadings int
	// MaxBufferedReadings bounds the in-memory buffer; a full buffer
	// blocks Append (backpressure), or, while commits fail, applies the
	// policy to the buffer (default DefaultMaxBufferedReadings).
	MaxBufferedReadings int

	MaxBytes int64         // logical size cap (default DefaultMaxBytes)
	MaxAge   time.Duration // 0: no age cap
	Policy   Policy

	// CompactAbove is the file size from which a file that is at least
	// three quarters free is compacted (default DefaultCompactAbove).
	CompactAbove int64

	LockTimeout time.Duration // default DefaultLockTimeout
	Logger      *slog.Logger  // nil: discard

	// Now is the wall clock for age caps and dead-letter times (nil:
	// time.Now).
	Now func() time.Time

	// UnsafeNoSync skips fsync. Only for tests that simulate a power cut;
	// it voids guarantee 1.
	UnsafeNoSync bool

	// noFallocate makes the spool behave as on a file system that cannot
	// preallocate (tests of a full disk without headroom).
	noFallocate bool
}

func (o Options) withDefaults() (Options, error) {
	if o.Path == "" {
		return o, errors.New("spool: options: path is required")
	}
	if err := reading.ValidateDevice(o.Device); err != nil {
		return o, fmt.Errorf("spool: options: device: %w", err)
	}
	if o.CommitInterval < 0 {
		return o, fmt.Errorf("spool: options: commit interval must not be negative, got %v", o.CommitInterval)
	}
	if o.CommitReadings <= 0 {
		o.CommitReadings = DefaultCommitReadings
	}
	if o.MaxBufferedReadings <= 0 {
		o.MaxBufferedReadings = DefaultMaxBufferedReadings
	}
	if o.CommitReadings > o.MaxBufferedReadings {
		o.CommitReadings = o.MaxBufferedReadings
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if bits.UintSize == 32 && o.MaxBytes > maxBytes32 {
		return o, fmt.Errorf("spool: options: max bytes %d too large for a 32-bit address space (at most %d)", o.MaxBytes, int64(maxBytes32))
	}
	if o.MaxAge < 0 {
		return o, fmt.Errorf("spool: options: max age must not be negative, got %v", o.MaxAge)
	}
	if o.Policy > RejectNew {
		return o, fmt.Errorf("spool: options: unknown policy %v", o.Policy)
	}
	if o.CompactAbove <= 0 {
		o.CompactAbove = DefaultCompactAbove
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}
