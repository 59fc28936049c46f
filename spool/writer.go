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
				s.log.Error("spool: compaction failed", "path", s.opts.Path, "error", err)
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
			s.log.Error("spool: close failed", "path", s.opts.Path, "error", err)
		}
		s.db = nil
	}
	s.dbMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
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
		s.log.Warn("spool: could not write the freelist at close; the next open walks the file", "path", s.opts.Path, "error", err)
	}
}

// applied is what a successful commit changed.
type applied struct {
	counters   record.Counters
	hwm        uint64 // live stream high-water mark
	newDropped uint64 // readings the cap dropped in this commit
}

// commit writes what is buffered and queued in one transaction.
func (s *Spool) commit() error {
	if s.corrupt.Load() {
		s.requarantine(errors.New("a read found the file corrupt"))
	}
	if err := s.ensureOpen(); err != nil {
		return s.finishEmpty(err)
	}
	now := s.opts.Now()
	// The age cap needs a write only when a reading has aged out: look
	// first (one read per stream), so an idle spool writes nothing.
	s.mu.Lock()
	ageDue := s.opts.MaxAge > 0 && now.Sub(s.lastAge) >= ageCheckEvery(s.opts.MaxAge)
	if ageDue {
		s.lastAge = now
	}
	idle := len(s.buf) == 0 && len(s.acks) == 0 && len(s.ops) == 0 && len(s.bufDropped) == 0
	streams := append([]record.Stream(nil), s.streams...)
	s.mu.Unlock()
	if ageDue && idle {
		ageDue = s.anyOlder(streams, now.Add(-s.opts.MaxAge))
	}
	s.mu.Lock()
	n := len(s.buf)
	acks, ops, dropped := s.acks, s.ops, s.bufDropped
	ackWaiting := s.ackWaiting
	s.acks, s.ops, s.bufDropped, s.ackWaiting = nil, nil, nil, 0
	s.gen++
	g := s.gen
	if n == 0 && len(acks) == 0 && len(ops) == 0 && len(dropped) == 0 && !ageDue {
		s.finishLocked(g, nil)
		s.mu.Unlock()
		return nil
	}
	s.inCommit = n
	items := s.buf[:n:n]
	live, hwm := s.stream, s.committed
	streams = append(streams[:0], s.streams...)
	s.mu.Unlock()

	s.mu.Lock()
	full := s.outOfSpace
	s.mu.Unlock()
	if full && s.opts.Policy == DropOldest && n > 0 {
		if _, err := s.makeRoom(n, false); err != nil && !isNoSpace(err) {
			s.log.Debug("spool: could not make room on a full disk", "path", s.opts.Path, "error", err)
		}
	}
	res, err := s.apply(live, streams, hwm, items, acks, ops, dropped, now, ageDue)
	if err != nil && isNoSpace(err) {
		// The file could not grow: with drop_oldest, free pages in it
		// and try again at once.
		s.setOutOfSpace(err)
		if s.opts.Policy == DropOldest {
			if _, derr := s.makeRoom(n, true); derr == nil {
				res, err = s.apply(live, streams, hwm, items, acks, ops, dropped, now, ageDue)
			}
		}
	}
	if err != nil && isCorrupt(err) {
		// The file is bad: set it aside, start a new stream, and commit the
		// buffered readings there. Acks and ops were about the old file.
		s.requarantine(err)
		for _, o := range ops {
			o.finish(fmt.Errorf("spool: %w: file quarantined", ErrCorrupt))
		}
		acks, ops, dropped, ackWaiting = nil, nil, nil, 0
		if err = s.ensureOpen(); err == nil {
			s.mu.Lock()
			live, streams, hwm = s.stream, append([]record.Stream(nil), s.streams...), s.committed
			s.mu.Unlock()
			res, err = s.apply(live, streams, hwm, items, nil, nil, nil, now, ageDue)
		}
	}

	s.mu.Lock()
	s.inCommit = 0
	if err == nil {
		s.commits.Add(1)
		clear(s.buf[:n])
		s.buf = s.buf[n:]
		s.counters, s.committed = res.counters, res.hwm
		for i := range s.streams {
			if s.streams[i].ID == live {
				s.streams[i].HWM = res.hwm
			}
		}
		if s.failing {
			s.log.Info("spool: commits work again", "path", s.opts.Path, "failures", s.failures)
		}
		s.failing, s.failures, s.lastErr = false, 0, nil
		s.logDropping(res)
	} else {
		s.acks = append(acks, s.acks...)
		s.ackWaiting += ackWaiting
		s.bufDropped = append(dropped, s.bufDropped...)
		if !s.failing {
			s.log.Error("spool: commit failed, readings wait in the buffer", "path", s.opts.Path, "buffered", len(s.buf), "error", err)
		}
		s.failing, s.lastErr = true, err
		s.failures++
	}
	s.finishLocked(g, err)
	s.mu.Unlock()
	for _, o := range ops {
		if err != nil && o.err == nil {
			o.err = err
		}
		if o.err == nil && o.kind == opResend {
			s.resend(o.stream, o.from, o.to)
		}
		o.finish(o.err)
	}
	if err == nil && n > 0 {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	return err
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
	return s.openFile(q)
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
	s.dbMu.Unlock()
	if err != nil {
		s.log.Error("spool: cannot open a new file after quarantine", "path", s.opts.Path, "error", err)
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

// apply is the body of one commit.
func (s *Spool) apply(live reading.StreamID, streams []record.Stream, hwm uint64, items []pending,
	acks []ackOp, ops []*op, bufDropped []seqRange, now time.Time, ageDue bool) (applied, error) {
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
		for _, r := range bufDropped {
			if err := record.AddPending(meta, live, r.from, r.to); err != nil {
				return err
			}
			c.Dropped += r.to - r.from + 1
			res.newDropped += r.to - r.from + 1
			hwm = max(hwm, r.to)
		}
		if len(items) > 0 || len(bufDropped) > 0 {
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
		for _, a := range acks {
			if err := applyAck(tx, meta, &c, a); err != nil {
				return err
			}
		}
		for _, o := range ops {
			if err := s.applyOp(tx, meta, &c, o, now); err != nil {
				return err
			}
		}
		n, err := s.enforceCaps(tx, meta, &c, streams, now, ageDue)
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
		if p.clk.Boot != (BootID{}) {
			if st.Boot, err = s.tab.BootIndex(tx, p.clk.Boot); err != nil {
				return err
			}
			st.HasBoot, st.BootTime = true, max(p.clk.BootTime, 0)
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
