package record

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
)

// DropOver drops the oldest readings, oldest stream first, while the
// logical size c.Bytes is over limit. It returns how many it dropped.
func DropOver(tx *bolt.Tx, meta *bolt.Bucket, c *Counters, streams []Stream, limit uint64) (uint64, error) {
	var total uint64
	for _, si := range streams {
		if c.Bytes <= limit {
			break
		}
		n, _, err := DropFront(tx, meta, c, si.ID, func([]byte) bool { return c.Bytes > limit })
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// DropFront deletes readings from the front of a stream while drop says
// so of their stored value, records them as pending ranges and counts
// them in c as dropped. stopped is true when drop refused a reading
// (rather than the stream running out).
func DropFront(tx *bolt.Tx, meta *bolt.Bucket, c *Counters, stream reading.StreamID, drop func(v []byte) bool) (n uint64, stopped bool, err error) {
	b := tx.Bucket(StreamBucket(stream))
	if b == nil {
		return 0, false, nil
	}
	var from, to uint64 // the run dropped and not recorded yet; from 0: none
	flush := func() error {
		if from == 0 {
			return nil
		}
		err := AddPending(meta, stream, from, to)
		from, to = 0, 0
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
		seq := Btoi(k)
		size := uint64(len(k) + len(v) + EntryOverhead)
		if err := cur.Delete(); err != nil {
			return n, stopped, fmt.Errorf("failed to drop seq %d: %w", seq, err)
		}
		c.Bytes -= min(size, c.Bytes)
		c.Readings -= min(1, c.Readings)
		c.Dropped++
		n++
		if from != 0 && to+1 == seq {
			to = seq
			continue
		}
		if err := flush(); err != nil {
			return n, stopped, err
		}
		from, to = seq, seq
	}
	return n, stopped, flush()
}
