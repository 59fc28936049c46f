package boltfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Check checks an existing file at path, read-only, in this goroutine,
// before bbolt opens it for writing: that the file holds all its pages,
// and, when full is set, every key and value. A missing or empty file
// passes. An error names the step, "open <path>" or "check <path>", and
// wraps ErrCorrupt when the file is damaged.
//
// With NoFreelistSync bbolt rebuilds its freelist at open by walking the
// whole file in a goroutine of its own, where a corrupt page panics out of
// reach of any recover and kills the process. A full walk here, with
// faults turned into panics and recovered, finds such a file first; it
// doubles the open time, so the spool runs it only after an open that did
// not finish.
func Check(path string, full bool, timeout time.Duration) (err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if full {
		// bbolt's cursor loops forever on a page cycle: walk the page
		// graph first, without it.
		if err := CheckPages(path); err != nil {
			return fmt.Errorf("check %s: %w", path, err)
		}
	}
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check %s: bbolt panic: %v: %w", path, p, ErrCorrupt)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return openErr(path, timeout, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); fi.Size() < need {
			return fmt.Errorf("file has %d bytes, its pages need %d: %w", fi.Size(), need, ErrCorrupt)
		}
		if !full {
			return nil
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return WalkBucket(b) })
	})
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	return nil
}

// Open opens the bbolt file at path with opts. A bbolt panic comes back as
// an error wrapping ErrCorrupt, a lock held past opts.Timeout as ErrLocked
// naming the holder; every error names "open <path>".
func Open(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("open %s: bbolt panic: %v: %w", path, p, ErrCorrupt)
		}
	}()
	db, err = bolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, openErr(path, opts.Timeout, err)
	}
	return db, nil
}

// openErr wraps an error of bolt.Open, naming the lock's holder.
func openErr(path string, timeout time.Duration, err error) error {
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("open %s: %w after %v (%s)", path, ErrLocked, timeout, LockHolder(path))
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// Close closes db, whatever state a corrupt file left bbolt in.
func Close(db *bolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// QuarantineSuffix precedes the UTC time in a quarantined file's name.
const QuarantineSuffix = ".quarantined-"

// Quarantine renames the closed file at path aside, to
// path.quarantined-<now in UTC>, durably, and returns the new name.
func Quarantine(path string, now time.Time) (string, error) {
	dst := path + QuarantineSuffix + now.UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	SyncDir(filepath.Dir(path))
	return dst, nil
}

// Copy writes the live data of db into a new bbolt file at path (replaced
// if it exists) opened with opts, in transactions of at most txBytes of
// keys and values, none of them synced; then it syncs the whole file
// once, freelist included (unless noSync), so that the next open reads
// the freelist instead of walking the file. A bbolt panic comes back as
// an error wrapping ErrCorrupt. After an error the new file is removed.
func Copy(db *bolt.DB, path string, opts bolt.Options, txBytes int64, noSync bool) error {
	_ = os.Remove(path)
	opts.NoSync, opts.NoFreelistSync = true, true
	dst, err := bolt.Open(path, 0o600, &opts)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if err := copyInto(dst, db, txBytes); err != nil {
		Close(dst)
		_ = os.Remove(path)
		return err
	}
	dst.NoSync, dst.NoFreelistSync = noSync, false
	if err := dst.Update(func(*bolt.Tx) error { return nil }); err != nil {
		Close(dst)
		_ = os.Remove(path)
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// copyInto copies the live data, turning a bbolt panic into ErrCorrupt.
func copyInto(dst, src *bolt.DB, txBytes int64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bbolt panic: %v: %w", p, ErrCorrupt)
		}
	}()
	return bolt.Compact(dst, src, txBytes)
}
