package spool

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// A full disk. bbolt commits copy-on-write: every page a commit changes is
// written to a free page of the file or past its end, then the meta page in
// place. On a full disk the file cannot grow, but the pages that earlier
// commits freed can be reused, and a commit that fits in them succeeds.
// So:
//
//   - The writer keeps headroom: after a commit it preallocates (fallocate)
//     reserveBytes past bbolt's high-water mark, so that the small
//     transaction that makes room on a full disk finds backed pages even
//     when the file holds no free page.
//   - When the preallocation or a commit fails with ENOSPC, EDQUOT or EFBIG
//     the spool is out of space. With drop_oldest, before a commit that
//     would need more pages than the file has free, a separate small
//     transaction drops the oldest committed readings (counted and kept as
//     ranges to report, like the cap's drops); the next commit reuses their
//     pages, so new readings keep being committed and the file stops
//     growing. With reject_new, new readings are refused (and counted)
//     while the file has no free pages; acknowledgements free some.
//   - A commit that fails all the same (the file's free pages were fewer
//     than estimated) makes room and is tried once more at once; if that
//     fails too, the readings wait in the bounded buffer, which sheds its
//     oldest with their seqs reported as dropped.
//   - Out of space ends when the preallocation works again.
const (
	// reserveBytes is the headroom kept preallocated past the file's
	// high-water mark: several drop transactions (each writes the paths
	// from the root to the leaves it changes, a handful of pages).
	reserveBytes = 16 * record.PageSize
	// pathPages is what a commit writes beyond its new leaves: the
	// branches above them, the meta bucket and the root, with a margin.
	pathPages = 8
	// A drop makes free, beyond what the next commit needs, a sixteenth
	// of the file's pages (at least minSlackPages, at most maxSlackPages),
	// so that drops are not needed on every commit and each stays small.
	minSlackPages = 4
	maxSlackPages = 256
	// spaceRetry is how often an out-of-space spool tries to preallocate
	// again to see whether space has returned.
	spaceRetry = 5 * time.Second
	// compactSpaceRetry is how long a compaction that failed for space
	// waits before it is tried again.
	compactSpaceRetry = 10 * time.Minute
)

// space is the writer's view of the disk. The writer goroutine alone
// touches it, except outOfSpace, refuse and rejected, which Append and
// Stats read under s.mu.
type space struct {
	backedDB    *bolt.DB // the file backedTo is about
	backedTo    int64    // preallocated up to this offset
	noFallocate bool     // the file system cannot preallocate
	lastTry     time.Time
	since       time.Time // out of space since
	dropped     uint64    // dropped for space in this episode
	rejected    uint64    // s.rejected when the episode began
	compactAt   time.Time // no compaction before (one failed for space)
}

// isNoSpace says whether err means the file system has no room for the
// file to grow.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// freePages is how many pages the next write transaction can reuse
// without growing the file (bbolt releases the pending ones when it
// begins, unless an older read transaction still holds them).
func (s *Spool) freePages() int {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return 0
	}
	st := s.db.Stats()
	return st.FreePageN + st.PendingPageN
}

// filePages is the file's high-water mark in pages.
func (s *Spool) filePages() int {
	var size int64
	_ = s.view(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return int(size / record.PageSize)
}

// pagesFor estimates the pages a commit of n new readings writes.
func pagesFor(n int) int {
	return (n*estimatedSize+record.PageSize-1)/record.PageSize + pathPages
}

// makeRoom, out of space with policy drop_oldest, drops the oldest
// committed readings in a transaction of its own when the file's free
// pages will not hold a commit of n readings (or always, after a commit
// failed for space). It returns the number dropped.
func (s *Spool) makeRoom(n int, failed bool) (uint64, error) {
	need, avail := pagesFor(n), s.freePages()
	if !failed && avail >= need {
		return 0, nil
	}
	s.mu.Lock()
	c, streams := s.counters, append([]record.Stream(nil), s.streams...)
	s.mu.Unlock()
	if c.Readings == 0 {
		return 0, errors.New("spool: no committed readings to drop for space")
	}
	pages := max(need-avail, 0) + min(max(s.filePages()/16, minSlackPages), maxSlackPages)
	if failed { // the estimate was short: drop more
		pages = max(pages, int(c.Bytes/8/record.PageSize))
	}
	target := c.Bytes - min(uint64(pages)*record.PageSize, c.Bytes)
	return s.dropTo(streams, target)
}

// dropTo drops the oldest readings, oldest stream first, until the
// logical size is at most target, in a transaction of its own.
func (s *Spool) dropTo(streams []record.Stream, target uint64) (uint64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var c record.Counters
	var n uint64
	err := s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(record.BucketMeta)
		if meta == nil {
			return fmt.Errorf("meta bucket missing: %w", ErrCorrupt)
		}
		c = record.ReadCounters(meta)
		var err error
		if n, err = record.DropOver(tx, meta, &c, streams, target); err != nil {
			return err
		}
		return record.WriteCounters(meta, c)
	})
	if err != nil {
		return 0, err
	}
	s.commits.Add(1)
	s.mu.Lock()
	s.counters = c
	s.mu.Unlock()
	s.space.dropped += n
	s.log.Debug("spool: dropped the oldest readings to make room on a full disk", "path", s.opts.Path, "dropped", n, "dropped_total", c.Dropped)
	return n, nil
}

// setOutOfSpace records that the disk is full. Writer only.
func (s *Spool) setOutOfSpace(cause error) {
	free := s.freePages()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outOfSpace {
		return
	}
	s.outOfSpace = true
	s.space.since, s.space.dropped, s.space.rejected = time.Now(), 0, s.rejected
	s.space.lastTry = time.Now()
	what := "dropping the oldest readings to keep committing new ones"
	if s.opts.Policy == RejectNew {
		what = "refusing new readings while the file has no free pages"
	}
	s.log.Warn("spool: disk full, "+what, "path", s.opts.Path, "policy", s.opts.Policy.String(), "err", cause)
	s.updateRefuseLocked(free)
}

// updateRefuseLocked decides, with policy reject_new on a full disk,
// whether new readings are refused. s.mu is held.
func (s *Spool) updateRefuseLocked(free int) {
	refuse := s.outOfSpace && s.opts.Policy == RejectNew && free < pagesFor(s.opts.CommitReadings)
	if refuse != s.refuse {
		if refuse {
			s.log.Warn("spool: disk full, refusing new readings (policy reject_new)", "path", s.opts.Path)
		} else {
			s.log.Info("spool: accepting new readings again", "path", s.opts.Path, "rejected", s.rejected-s.space.rejected)
		}
	}
	s.refuse = refuse
}

// afterCommit keeps the headroom preallocated and, out of space, checks
// now and then whether space has returned. Writer only.
func (s *Spool) afterCommit() {
	s.mu.Lock()
	full := s.outOfSpace
	s.mu.Unlock()
	if full && time.Since(s.space.lastTry) < spaceRetry {
		s.updateRefuse()
		return
	}
	s.dbMu.RLock()
	db := s.db
	if db == nil {
		s.dbMu.RUnlock()
		return
	}
	if db != s.space.backedDB {
		s.space.backedDB, s.space.backedTo = db, 0
	}
	var hwm int64
	_ = db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
	if !full && (s.space.noFallocate || s.space.backedTo-hwm >= reserveBytes) {
		s.dbMu.RUnlock()
		return
	}
	s.space.lastTry = time.Now()
	var err error
	if s.space.noFallocate {
		err = boltfile.Room(filepath.Dir(s.opts.Path), 2*reserveBytes)
	} else {
		// Out of space, the probe must need new blocks: past what is
		// preallocated already.
		to := hwm + 2*reserveBytes
		if full {
			to = max(hwm, s.space.backedTo) + 2*reserveBytes
		}
		if err = boltfile.Preallocate(s.opts.Path, hwm, to); err == nil {
			s.space.backedTo = to
		}
	}
	s.dbMu.RUnlock()
	switch {
	case err == nil:
		if full {
			s.leaveOutOfSpace()
		}
	case isNoSpace(err):
		s.setOutOfSpace(err)
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL):
		s.space.noFallocate = true
		s.log.Debug("spool: the file system cannot preallocate; no headroom kept", "path", s.opts.Path, "err", err)
	default:
		s.log.Warn("spool: preallocating headroom failed", "path", s.opts.Path, "err", err)
	}
	if full || err != nil {
		s.updateRefuse()
	}
}

func (s *Spool) updateRefuse() {
	free := s.freePages()
	s.mu.Lock()
	s.updateRefuseLocked(free)
	s.mu.Unlock()
}

// leaveOutOfSpace ends an out-of-space episode. Writer only.
func (s *Spool) leaveOutOfSpace() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outOfSpace = false
	s.log.Info("spool: disk has space again", "path", s.opts.Path,
		"full_s", time.Since(s.space.since).Seconds(), "dropped", s.space.dropped,
		"rejected", s.rejected-s.space.rejected)
}
