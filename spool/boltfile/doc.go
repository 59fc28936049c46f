// Package boltfile handles the spool's bbolt file as a file, beneath the
// spool's records and beneath bbolt's API where bbolt cannot be trusted.
// It knows bbolt's on-disk layout, not the spool's buckets.
//
// A damaged file must not crash, hang or crash-loop the daemon. bbolt
// rebuilds its freelist at open in a goroutine of its own, where a corrupt
// page panics out of reach of any recover: Check reads every page first,
// in the caller's goroutine, with faults turned into panics. A torn or
// garbled file can hold a page cycle, on which bbolt's cursor descends
// forever: CheckPages walks the page graph straight from the file, never
// reaching a page twice, and RebuildReachable copies what that walk
// reaches into a clean file, for salvage. Open turns a bbolt panic into
// ErrCorrupt and a held lock into ErrLocked naming its holder;
// Quarantine sets a bad file aside.
//
// The rest is the file-system work around the file: the compaction's copy
// (Copy), read-ahead before an open, preallocation of headroom and the
// free space left (Preallocate, Room), durable renames (SyncDir).
package boltfile

import "errors"

// Sentinel errors; the spool's errors of the same names are these.
var (
	// ErrCorrupt is wrapped by the errors that show a damaged file: the
	// spool quarantines a file that fails with it.
	ErrCorrupt = errors.New("spool file corrupt")
	// ErrLocked is wrapped by Open and Check when another process (or
	// another handle in this one) holds the file's lock past the timeout;
	// the message names the holder when /proc/locks shows it.
	ErrLocked = errors.New("spool file is locked")
)
