package spool

import (
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
		n, err := record.DropOver(tx, meta, c, streams, uint64(s.opts.MaxBytes))
		if err != nil {
			return n, err
		}
		total += n
	}
	if ageDue {
		oldest := now.Add(-s.opts.MaxAge)
		for _, si := range streams {
			n, stopped, err := record.DropFront(tx, meta, c, si.ID, func(v []byte) bool {
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

// anyOlder says whether the oldest stored reading was taken (with a
// synchronised clock) before t. It reads one reading per stream at most.
func (s *Spool) anyOlder(streams []record.Stream, t time.Time) bool {
	older := false
	_ = s.oldest(streams, func(_ reading.StreamID, v []byte) error {
		d, err := record.DecodeStored(v)
		older = err == nil && !d.Unsynced && d.Time.Before(t)
		return nil
	})
	return older
}

// oldest calls fn, in a read transaction, with the stored value of the
// oldest reading: the first of the oldest of streams that holds one. It
// reads one reading per stream at most, and does not call fn when none
// holds one.
func (s *Spool) oldest(streams []record.Stream, fn func(stream reading.StreamID, v []byte) error) error {
	return s.view(func(tx *bolt.Tx) error {
		for _, si := range streams {
			b := tx.Bucket(record.StreamBucket(si.ID))
			if b == nil {
				continue
			}
			if _, v := b.Cursor().First(); v != nil {
				return fn(si.ID, v)
			}
		}
		return nil
	})
}
