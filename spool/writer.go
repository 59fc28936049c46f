package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// A failed commit is tried again after retryInterval, doubling up to
// maxRetryInterval while commits keep failing: with NoFreelistSync, bbolt
// rebuilds its freelist by walking the whole file after every failed
// write transaction.
const (
	retryInterval    = time.Second
	maxRetryInterval = 30 * time.Second
)

// run is the writer: the one goroutine that writes the file.
func (s *Spool) run() {
	debug.SetPanicOnFault(true) // a truncated mmap faults: recover, quarantine
	defer close(s.done)
	var tick <-chan time.Time
	if s.opts.CommitInterval > 0 {
		t := time.NewTicker(s.opts.CommitInterval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTimer(retryInterval)
	retry.Stop()
	defer retry.Stop()
	var backoff time.Duration // while commits fail
	var retryAt time.Time
	for {
		stopping := false
		select {
		case <-s.kick:
		case <-tick:
		case <-retry.C:
		case <-s.stop:
			stopping = true
		}
		if !stopping && backoff > 0 && time.Now().Before(retryAt) {
			continue // a failed write transaction costs bbolt a walk of the file
		}
		err := s.commit()
		if stopping {
			s.shutdown()
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, retryInterval), maxRetryInterval)
			retryAt = time.Now().Add(backoff)
			retry.Reset(backoff)
			continue
		}
		backoff = 0
		s.afterCommit()
		if time.Now().After(s.space.compactAt) && s.compactDue() {
			if err := s.compact(); err != nil {
				s.log.Error("spool: compaction failed", "path", s.opts.Path, "err", err)
				if isNoSpace(err) { // it needs room for the new file
					s.space.compactAt = time.Now().Add(compactSpaceRetry)
				}
			}
		}
	}
}

// shutdown closes the file after the last commit and wakes every waiter.
func (s *Spool) shutdown() {
	s.dbMu.Lock()
	if s.db != nil {
		s.syncFreelist()
		if err := s.db.Close(); err != nil {
			s.log.Error("spool: close failed", "path", s.opts.Path, "err", err)
		}
		s.db = nil
	}
	s.dbMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeJournalLocked()
	if s.ackTimer != nil {
		s.ackTimer.Stop()
	}
	s.writerDone = true
	for _, o := range s.ops {
		o.finish(ErrClosed)
	}
	s.ops = nil
	close(s.commitCh)
	s.commitCh = make(chan struct{})
}

// syncFreelist writes bbolt's freelist in a last, empty commit, so the
// next open reads it instead of walking the whole file (a clean shutdown
// opens instantly; after a crash the next open walks the file). The next
// commit drops the freelist again. s.dbMu is held.
func (s *Spool) syncFreelist() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("spool: final commit panicked", "path", s.opts.Path, "panic", p)
		}
	}()
	s.db.NoFreelistSync = false
	if err := s.db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		s.log.Warn("spool: could not write the freelist at close; the next open walks the file", "path", s.opts.Path, "err", err)
	}
}

// applied is what a successful commit changed.
type applied struct {
	counters   record.Counters
	hwm        uint64 // live stream high-water mark
	newDropped uint64 // readings the cap dropped in this commit
}

// commitWork is what one commit writes, taken from the spool in one go
// when the commit starts.
type commitWork struct {
	gen        uint64 // the commit's generation
	now        time.Time
	items      []pending // s.buf[:len(items)], seq order
	acks       []ackOp
	ackWaiting int // readings in acks
	ops        []*op
	dropped    []seqRange // live seqs dropped from the buffer
	live       reading.StreamID
	hwm        uint64 // the live stream's committed high-water mark
	streams    []record.Stream
	ageDue     bool // the age cap is checked
	full       bool // the disk is full
}

func (w *commitWork) idle() bool {
	return len(w.items) == 0 && len(w.acks) == 0 && len(w.ops) == 0 && len(w.dropped) == 0
}

// commit writes what is buffered and queued in one transaction. It takes
// s.mu once to take the work (takeWork) and once to record the outcome
// (finishCommit); writeWork takes it once more only to follow a
// quarantine to the new file.
func (s *Spool) commit() error {
	if s.corrupt.Load() {
		s.requarantine(errors.New("a read found the file corrupt"))
	}
	if err := s.ensureOpen(); err != nil {
		return s.finishEmpty(err)
	}
	w, done := s.takeWork(s.opts.Now())
	if done {
		return nil
	}
	if w.ageDue && w.idle() {
		// The age cap needs a write only when a reading has aged out: look
		// first (one read per stream), so an idle spool writes nothing.
		if w.ageDue = s.anyOlder(w.streams, w.now.Add(-s.opts.MaxAge)); !w.ageDue {
			s.mu.Lock()
			s.finishLocked(w.gen, nil)
			s.mu.Unlock()
			return nil
		}
	}
	res, err := s.writeWork(&w)
	s.finishCommit(&w, res, err)
	return err
}

// takeWork starts a commit: under s.mu, it takes what is buffered and
// queued and counts the commit's generation. done says there was nothing
// to write, and the commit is finished already.
func (s *Spool) takeWork(now time.Time) (w commitWork, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.now = now
	if s.opts.MaxAge > 0 && now.Sub(s.lastAge) >= ageCheckEvery(s.opts.MaxAge) {
		s.lastAge, w.ageDue = now, true
	}
	n := len(s.buf)
	w.items = s.buf[:n:n]
	w.acks, w.ops, w.dropped, w.ackWaiting = s.acks, s.ops, s.bufDropped, s.ackWaiting
	s.acks, s.ops, s.bufDropped, s.ackWaiting = nil, nil, nil, 0
	if s.ackTimerSet && len(w.acks) > 0 {
		s.ackTimer.Stop()
		s.ackTimerSet = false
	}
	s.gen++
	w.gen = s.gen
	if w.idle() && !w.ageDue {
		s.finishLocked(w.gen, nil)
		return w, true
	}
	s.inCommit = n
	w.live, w.hwm, w.full = s.stream, s.committed, s.outOfSpace
	w.streams = append([]record.Stream(nil), s.streams...)
	return w, false
}

// writeWork writes w in one transaction. On a full disk with drop_oldest
// it makes room first, and once more at once after a commit that failed
// for space. On a corrupt file it quarantines the file and writes w's
// readings into the new one; w's acks and ops were about the old file,
// which it fails and takes out of w.
func (s *Spool) writeWork(w *commitWork) (applied, error) {
	n := len(w.items)
	if w.full && s.opts.Policy == DropOldest && n > 0 {
		if _, err := s.makeRoom(n, false); err != nil && !isNoSpace(err) {
			s.log.Debug("spool: could not make room on a full disk", "path", s.opts.Path, "err", err)
		}
	}
	res, err := s.apply(w)
	if err != nil && isNoSpace(err) {
		// The file could not grow: with drop_oldest, free pages in it
		// and try again at once.
		s.setOutOfSpace(err)
		if s.opts.Policy == DropOldest {
			if _, derr := s.makeRoom(n, true); derr == nil {
				res, err = s.apply(w)
			}
		}
	}
	if err != nil && isCorrupt(err) {
		// The file is bad: set it aside, start a new stream, and commit the
		// buffered readings there.
		s.requarantine(err)
		for _, o := range w.ops {
			o.finish(fmt.Errorf("spool: %w: file quarantined", ErrCorrupt))
		}
		w.acks, w.ops, w.dropped, w.ackWaiting = nil, nil, nil, 0
		if err = s.ensureOpen(); err == nil {
			s.mu.Lock()
			w.live, w.streams, w.hwm = s.stream, append([]record.Stream(nil), s.streams...), s.committed
			s.mu.Unlock()
			res, err = s.apply(w)
		}
	}
	return res, err
}

// finishCommit records the outcome of commit w under s.mu: after a
// success the new counters and high-water mark; after a failure w's acks
// and buffer drops go back to wait for the next commit. Then it finishes
// w's ops and, when readings were committed, tells the drain.
func (s *Spool) finishCommit(w *commitWork, res applied, err error) {
	n := len(w.items)
	s.mu.Lock()
	s.inCommit = 0
	if err == nil {
		s.commits.Add(1)
		clear(s.buf[:n])
		s.buf = s.buf[n:]
		s.counters, s.committed = res.counters, res.hwm
		for i := range s.streams {
			if s.streams[i].ID == w.live {
				s.streams[i].HWM = res.hwm
			}
		}
		if s.failing {
			s.log.Info("spool: commits work again", "path", s.opts.Path, "failures", s.failures)
		}
		s.failing, s.failures, s.lastErr = false, 0, nil
		s.logDropping(res)
		s.rejournalLocked() // what the commit stored leaves the journal
	} else {
		s.acks = append(w.acks, s.acks...)
		s.ackWaiting += w.ackWaiting
		s.scheduleAckCommit()
		s.bufDropped = append(w.dropped, s.bufDropped...)
		if !s.failing {
			s.log.Error("spool: commit failed, readings wait in the buffer", "path", s.opts.Path, "buffered", len(s.buf), "err", err)
		}
		s.failing, s.lastErr = true, err
		s.failures++
	}
	s.finishLocked(w.gen, err)
	s.mu.Unlock()
	for _, o := range w.ops {
		if err != nil && o.err == nil {
			o.err = err
		}
		if o.err == nil && o.kind == opResend {
			s.resend(o.stream, o.from, o.to)
		}
		o.finish(o.err)
	}
	if err == nil && n > 0 {
		s.kickNotify()
	}
}

func ageCheckEvery(maxAge time.Duration) time.Duration {
	return min(max(maxAge/10, time.Second), time.Minute)
}

// logDropping logs when the cap starts and stops dropping. s.mu is held.
func (s *Spool) logDropping(res applied) {
	switch {
	case res.newDropped > 0 && !s.dropping:
		s.dropping = true
		s.log.Warn("spool: cap reached, dropping the oldest readings", "path", s.opts.Path,
			"max_bytes", s.opts.MaxBytes, "max_age_s", s.opts.MaxAge.Seconds(), "dropped", res.newDropped)
	case res.newDropped == 0 && s.dropping:
		s.dropping = false
		s.log.Info("spool: below the cap again", "path", s.opts.Path, "dropped_total", res.counters.Dropped)
	}
}

// finishLocked records the end of commit g and wakes its waiters. s.mu is
// held.
func (s *Spool) finishLocked(g uint64, err error) {
	s.doneGen, s.doneErr = g, err
	if err == nil {
		s.okGen = g
	}
	close(s.commitCh)
	s.commitCh = make(chan struct{})
}

func (s *Spool) finishEmpty(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.failing, s.lastErr = true, err
	s.finishLocked(s.gen, err)
	return err
}

// ensureOpen reopens the file if a quarantine could not open a new one.
func (s *Spool) ensureOpen() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		return nil
	}
	s.mu.Lock()
	q := s.counters.Quarantined
	s.mu.Unlock()
	if err := s.openFile(q); err != nil {
		return err
	}
	s.reopenJournal()
	return nil
}

// requarantine sets the open file aside at run time and opens a new one.
func (s *Spool) requarantine(cause error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.dbMu.Lock()
	if s.db != nil {
		boltfile.Close(s.db)
		s.db = nil
	}
	s.mu.Lock()
	q := s.counters.Quarantined
	s.mu.Unlock()
	var err error
	if _, err = s.quarantine(cause); err == nil {
		err = s.openFile(q + 1)
	}
	if err == nil {
		s.reopenJournal()
	}
	s.dbMu.Unlock()
	if err != nil {
		s.log.Error("spool: cannot open a new file after quarantine", "path", s.opts.Path, "err", err)
	}
	s.drainMu.Lock()
	clear(s.cursor)
	clear(s.handed)
	clear(s.resent)
	clear(s.fresh)
	s.drainMu.Unlock()
	s.corrupt.Store(false)
}

// update runs fn in a write transaction, turning a bbolt panic into
// ErrCorrupt.
func (s *Spool) update(fn func(*bolt.Tx) error) (err error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return fmt.Errorf("spool: no open file: %w", ErrClosed)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("spool: commit: bbolt panic: %v: %w", p, ErrCorrupt)
		}
	}()
	return s.db.Update(fn)
}

// view runs fn in a read transaction; a panic or corruption marks the
// file for quarantine by the writer.
func (s *Spool) view(fn func(*bolt.Tx) error) (err error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return fmt.Errorf("spool: no open file: %w", ErrClosed)
	}
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("spool: read: bbolt panic: %v: %w", p, ErrCorrupt)
		}
		if err != nil && isCorrupt(err) {
			s.corrupt.Store(true)
			s.kickWriter()
		}
	}()
	return s.db.View(fn)
}

// apply is the body of one commit: the transaction that writes w.
func (s *Spool) apply(w *commitWork) (applied, error) {
	live, streams, hwm, items := w.live, w.streams, w.hwm, w.items
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	nS, nB := s.tab.Mark()
	var res applied
	err := s.update(func(tx *bolt.Tx) error {
		if s.commitHook != nil {
			s.commitHook()
		}
		meta := tx.Bucket(record.BucketMeta)
		if meta == nil {
			return fmt.Errorf("meta bucket missing: %w", ErrCorrupt)
		}
		c := record.ReadCounters(meta)
		if err := s.appendItems(tx, meta, &c, live, &hwm, items); err != nil {
			return err
		}
		for _, r := range w.dropped {
			if err := record.AddPending(meta, live, r.from, r.to); err != nil {
				return err
			}
			c.Dropped += r.to - r.from + 1
			res.newDropped += r.to - r.from + 1
			hwm = max(hwm, r.to)
		}
		if len(items) > 0 || len(w.dropped) > 0 {
			if err := record.PutU64(meta, record.KeySeq, hwm); err != nil {
				return err
			}
			created := int64(0)
			for _, si := range streams {
				if si.ID == live {
					created = si.Created
				}
			}
			if err := record.PutStream(meta, record.Stream{ID: live, Created: created, HWM: hwm}); err != nil {
				return err
			}
		}
		for _, a := range w.acks {
			if err := applyAck(tx, meta, &c, a); err != nil {
				return err
			}
		}
		for _, o := range w.ops {
			if err := s.applyOp(tx, meta, &c, o, w.now); err != nil {
				return err
			}
		}
		n, err := s.enforceCaps(tx, meta, &c, streams, w.now, w.ageDue)
		if err != nil {
			return err
		}
		res.newDropped += n
		res.counters = c
		return record.WriteCounters(meta, c)
	})
	if err != nil {
		s.tab.Rollback(nS, nB)
		return res, err
	}
	res.hwm = hwm
	return res, nil
}

// appendItems puts the buffered readings into the live stream's bucket.
func (s *Spool) appendItems(tx *bolt.Tx, meta *bolt.Bucket, c *record.Counters, live reading.StreamID, hwm *uint64, items []pending) error {
	if len(items) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(record.StreamBucket(live))
	if err != nil {
		return fmt.Errorf("failed to open stream bucket %v: %w", live, err)
	}
	b.FillPercent = 1 // keys only grow: fill leaves before splitting
	// bbolt keeps keys and values until the commit: give them one arena.
	// (A reallocation leaves earlier slices valid.)
	arena := make([]byte, 0, len(items)*32)
	var scratch []byte
	for i := range items {
		p := &items[i]
		if p.seq <= *hwm {
			return fmt.Errorf("seq %d not above high-water mark %d: %w", p.seq, *hwm, ErrCorrupt)
		}
		scratch = record.AppendSeriesKey(scratch[:0], &p.r)
		id, err := s.tab.SeriesID(tx, scratch)
		if err != nil {
			return err
		}
		st := record.Stored{Series: id, Time: p.r.Time, Value: p.r.Value, Unsynced: p.r.Unsynced}
		if p.bootTime > 0 && s.opts.Boot != (BootID{}) {
			if st.Boot, err = s.tab.BootIndex(tx, s.opts.Boot); err != nil {
				return err
			}
			st.HasBoot, st.BootTime = true, p.bootTime
		}
		start := len(arena)
		arena = binary.BigEndian.AppendUint64(arena, p.seq)
		arena = record.AppendStored(arena, &st)
		k, v := arena[start:start+8], arena[start+8:]
		if err := b.Put(k, v); err != nil {
			return fmt.Errorf("failed to store seq %d: %w", p.seq, err)
		}
		c.Bytes += uint64(len(k) + len(v) + record.EntryOverhead)
		c.Readings++
		*hwm = p.seq
	}
	return nil
}
