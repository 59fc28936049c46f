package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// Compaction: bbolt never shrinks its file. Once a file has grown past
// Options.CompactAbove and at most a quarter of it holds live pages (the
// backlog drained), the writer copies the live data into a new file
// (bolt.Compact, committed and fsynced), renames it over the spool and
// reopens it. A crash before the rename leaves the old file and a
// temporary one, which the next open removes; after it, the new file is
// complete.

// DefaultCompactAbove is the file size from which a mostly empty spool is
// compacted.
const DefaultCompactAbove = 64 << 20

// compactTxBytes bounds the keys and values of each transaction of a
// compaction. A transaction keeps each of its entries in memory until it
// commits (bbolt's nodes: about 100 bytes of heap per stored reading), so
// this bounds the compaction's heap whatever the backlog: 4 MiB took 25 MiB
// of live heap, 256 KiB still 2.7 MiB more RssAnon than 64 KiB in a 3M
// drain. The transactions are not synced one by one (see compact), so
// small ones cost no fsyncs.
const compactTxBytes = 64 << 10

// compactDue says whether the file should be compacted: large, and at least
// three quarters free pages.
func (s *Spool) compactDue() bool {
	fi, err := os.Stat(s.opts.Path)
	if err != nil || fi.Size() < s.opts.CompactAbove {
		return false
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return false
	}
	st := s.db.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * record.PageSize
	var used int64
	if err := s.db.View(func(tx *bolt.Tx) error { used = tx.Size() - free; return nil }); err != nil {
		return false
	}
	return used*4 <= fi.Size()
}

// compact rewrites the file with only its live data. Writer only.
func (s *Spool) compact() error {
	path, tmp := s.opts.Path, compactPath(s.opts.Path)
	start := time.Now()
	before, _ := os.Stat(path)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db == nil {
		return nil
	}
	// The copy's transactions skip fsync: until the rename, a crash
	// leaves only a temporary file, which the next open removes. Its last,
	// empty transaction syncs the whole file, and its freelist, so the
	// reopen below reads the freelist instead of walking the file.
	err := boltfile.Copy(s.db, tmp, bolt.Options{
		Timeout:      s.opts.LockTimeout,
		PageSize:     record.PageSize,
		FreelistType: bolt.FreelistMapType,
	}, compactTxBytes, s.opts.UnsafeNoSync)
	if err != nil {
		return fmt.Errorf("spool: compact: %w", err)
	}
	if err := s.db.Close(); err != nil {
		s.log.Error("spool: compact: close failed", "path", path, "err", err)
	}
	s.db = nil
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		s.reopenLocked()
		return fmt.Errorf("spool: compact: rename: %w", err)
	}
	boltfile.SyncDir(filepath.Dir(path))
	if err := s.reopenLocked(); err != nil {
		return err
	}
	s.compactions.Add(1)
	after, _ := os.Stat(path)
	if before != nil && after != nil {
		s.log.Info("spool: compacted", "path", path, "bytes_before", before.Size(), "bytes_after", after.Size(),
			"seconds", time.Since(start).Seconds())
	}
	return nil
}

// reopenLocked opens the file again after a compaction; s.dbMu is held.
func (s *Spool) reopenLocked() error {
	s.mu.Lock()
	q := s.counters.Quarantined
	s.mu.Unlock()
	if err := s.openFile(q); err != nil {
		return fmt.Errorf("spool: reopen after compaction: %w", err)
	}
	s.reopenJournal() // when the reopen quarantined the file
	return nil
}

// compactPath is where a compaction writes the new file before renaming it
// over the spool; a leftover is removed at open.
func compactPath(path string) string { return path + ".compact" }
