// Package boltfile reads and tends the spool's bbolt file beneath bbolt's
// API. It knows bbolt's on-disk layout, not the spool's buckets.
//
// A torn or garbled file can hold a page cycle, on which bbolt's cursor
// descends forever, out of reach of any recover: CheckPages walks the page
// graph straight from the file, never reaching a page twice, and
// RebuildReachable copies what that walk reaches into a clean file, for
// salvage. WalkBucket reads every key and value through bbolt, so that a
// fault shows in the caller's goroutine. The rest is the file-system work
// around the file: who holds its lock (LockHolder), read-ahead before an
// open, preallocation of headroom, and durable renames (SyncDir).
package boltfile

import "errors"

// ErrCorrupt is wrapped by the errors that show a damaged file. It is
// spool.ErrCorrupt: the spool quarantines a file that fails with it.
var ErrCorrupt = errors.New("spool file corrupt")
