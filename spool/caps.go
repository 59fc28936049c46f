package spool

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

// enforceCaps drops the oldest readings while the spool is over MaxBytes
// (policy DropOldest) and, when an age check is due, those older than
// MaxAge. Readings taken before the clock was synchronised carry no
// trustworthy time: the age cap stops at the first of them. It returns how
// many readings it dropped.
func (s *Spool) enforceCaps(tx *bolt.Tx, meta *bolt.Bucket, c *record.Counters, streams []record.Stream, now time.Time, ageDue bool) (uint64, error) {
	var total uint64
	if s.opts.Policy == DropOldest {
		n, err := dropOver(tx, meta, c, streams, uint64(s.opts.MaxBytes))
		if err != nil {
			return n, err
		}
		total += n
	}
	if ageDue {
		oldest := now.Add(-s.opts.MaxAge)
		for _, si := range streams {
			n, stopped, err := dropFront(tx, meta, c, si.ID, func(v []byte) bool {
				d, err := record.DecodeStored(v)
				return err == nil && !d.Unsynced && d.Time.Before(oldest)
			})
			if err != nil {
				return total, err
			}
			total += n
			if stopped {
				break
			}
		}
	}
	return total, nil
}

// dropOver drops the oldest readings, oldest stream first, while the
// logical size is over limit. It returns how many it dropped.
func dropOver(tx *bolt.Tx, meta *bolt.Bucket, c *record.Counters, streams []record.Stream, limit uint64) (uint64, error) {
	var total uint64
	for _, si := range streams {
		if c.Bytes <= limit {
			break
		}
		n, _, err := dropFront(tx, meta, c, si.ID, func([]byte) bool { return c.Bytes > limit })
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// dropFront deletes readings from the front of a stream while drop says
// so, records them as pending dropped ranges and counts them. stopped is
// true when drop refused a reading (rather than the stream running out).
func dropFront(tx *bolt.Tx, meta *bolt.Bucket, c *record.Counters, stream reading.StreamID, drop func(v []byte) bool) (n uint64, stopped bool, err error) {
	b := tx.Bucket(record.StreamBucket(stream))
	if b == nil {
		return 0, false, nil
	}
	var run seqRange
	flush := func() error {
		if run.from == 0 {
			return nil
		}
		err := record.AddPending(meta, stream, run.from, run.to)
		run = seqRange{}
		return err
	}
	cur := b.Cursor()
	for k, v := cur.First(); ; k, v = cur.First() {
		if k == nil {
			break
		}
		if !drop(v) {
			stopped = true
			break
		}
		seq := record.Btoi(k)
		size := uint64(len(k) + len(v) + record.EntryOverhead)
		if err := cur.Delete(); err != nil {
			return n, stopped, fmt.Errorf("failed to drop seq %d: %w", seq, err)
		}
		c.Bytes -= min(size, c.Bytes)
		c.Readings -= min(1, c.Readings)
		c.Dropped++
		n++
		if run.from != 0 && run.to+1 == seq {
			run.to = seq
			continue
		}
		if err := flush(); err != nil {
			return n, stopped, err
		}
		run = seqRange{seq, seq}
	}
	return n, stopped, flush()
}

// anyOlder says whether the oldest stored reading was taken (with a
// synchronised clock) before t. It reads one reading per stream at most.
func (s *Spool) anyOlder(streams []record.Stream, t time.Time) bool {
	older := false
	_ = s.view(func(tx *bolt.Tx) error {
		for _, si := range streams {
			b := tx.Bucket(record.StreamBucket(si.ID))
			if b == nil {
				continue
			}
			if _, v := b.Cursor().First(); v != nil {
				d, err := record.DecodeStored(v)
				older = err == nil && !d.Unsynced && d.Time.Before(t)
				return nil
			}
		}
		return nil
	})
	return older
}
