package record

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
)

// A dead-letter record, under key stream(8) ‖ from(8) in the dead bucket:
//
//	varint unix ns when dead-lettered ‖ uvarint len ‖ reason ‖ uvarint to ‖
//	uvarint count ‖ count × (uvarint seq−from ‖ uvarint len ‖ reading value)
//
// The reading values are those of the stream bucket, so a resend moves them
// back unchanged (same stream, same seq).

// Dead is a dead-letter record without its readings.
type Dead struct {
	Stream   reading.StreamID
	From, To uint64
	Reason   string
	Time     time.Time // when it was dead-lettered
}

// DeadEntry is a reading of a dead-letter record: its seq and its value
// as the stream bucket held it.
type DeadEntry struct {
	Seq   uint64
	Value []byte
}

// AppendDead appends the dead-letter record of d, holding entries (whose
// seqs are d.From or above), to dst. d.Stream and d.From go in its key.
func AppendDead(dst []byte, d Dead, entries []DeadEntry) []byte {
	dst = binary.AppendVarint(dst, d.Time.UnixNano())
	dst = appendString(dst, d.Reason)
	dst = binary.AppendUvarint(dst, d.To)
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	for _, e := range entries {
		dst = binary.AppendUvarint(dst, e.Seq-d.From)
		dst = binary.AppendUvarint(dst, uint64(len(e.Value)))
		dst = append(dst, e.Value...)
	}
	return dst
}

// DecodeDead decodes the dead-letter record k → v. The values of the
// entries it returns are slices of v.
func DecodeDead(k, v []byte) (Dead, []DeadEntry, error) {
	var d Dead
	if len(k) != 16 {
		return d, nil, fmt.Errorf("dead-letter key %x: %w", k, boltfile.ErrCorrupt)
	}
	d.Stream, d.From = reading.StreamID(Btoi(k[:8])), Btoi(k[8:])
	bad := fmt.Errorf("dead-letter record %v %d: %w", d.Stream, d.From, boltfile.ErrCorrupt)
	ns, n := binary.Varint(v)
	if n <= 0 {
		return d, nil, bad
	}
	d.Time = time.Unix(0, ns).UTC()
	reason, rest, ok := readString(v[n:])
	if !ok {
		return d, nil, bad
	}
	d.Reason = reason
	var count uint64
	if d.To, rest, ok = uvarint(rest); !ok {
		return d, nil, bad
	}
	if count, rest, ok = uvarint(rest); !ok || count > uint64(len(rest)) {
		return d, nil, bad
	}
	entries := make([]DeadEntry, 0, count)
	for range count {
		var delta, l uint64
		if delta, rest, ok = uvarint(rest); !ok {
			return d, nil, bad
		}
		if l, rest, ok = uvarint(rest); !ok || l > uint64(len(rest)) {
			return d, nil, bad
		}
		entries = append(entries, DeadEntry{Seq: d.From + delta, Value: rest[:l]})
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return d, nil, bad
	}
	return d, entries, nil
}

// DeadLetter moves the stored readings of d.Stream with seqs d.From–d.To
// into a dead-letter record holding d's reason and time, and counts them
// in c. When the stream holds none of them it writes nothing and returns
// an error wrapping ErrNotFound.
func DeadLetter(tx *bolt.Tx, c *Counters, d Dead) error {
	dead, err := tx.CreateBucketIfNotExists(BucketDead)
	if err != nil {
		return fmt.Errorf("failed to open dead-letter bucket: %w", err)
	}
	sb := tx.Bucket(StreamBucket(d.Stream))
	if sb == nil {
		return fmt.Errorf("stream %v: %w", d.Stream, ErrNotFound)
	}
	var entries []DeadEntry
	cur := sb.Cursor()
	for k, v := cur.Seek(Itob(d.From)); k != nil && Btoi(k) <= d.To; k, v = cur.Next() {
		entries = append(entries, DeadEntry{Seq: Btoi(k), Value: v})
	}
	if len(entries) == 0 {
		return fmt.Errorf("no stored readings in %d–%d: %w", d.From, d.To, ErrNotFound)
	}
	rec := AppendDead(nil, d, entries)
	n, size, err := DeleteRange(sb, d.From, d.To)
	if err != nil {
		return err
	}
	c.Readings -= min(n, c.Readings)
	c.Bytes -= min(size, c.Bytes)
	c.DeadLettered += n
	if err := dead.Put(DeadKey(d.Stream, d.From), rec); err != nil {
		return fmt.Errorf("failed to store dead letter: %w", err)
	}
	return nil
}

// TakeDead deletes the dead-letter record of stream at seq from and
// returns its last seq. With resend its readings go back into their
// stream bucket (same seqs), counted in c; else (a purge) its range is
// recorded as pending, to be reported like a dropped one. When there is
// no such record it returns an error wrapping ErrNotFound.
func TakeDead(tx *bolt.Tx, meta *bolt.Bucket, c *Counters, stream reading.StreamID, from uint64, resend bool) (to uint64, err error) {
	dead, err := tx.CreateBucketIfNotExists(BucketDead)
	if err != nil {
		return 0, fmt.Errorf("failed to open dead-letter bucket: %w", err)
	}
	k := DeadKey(stream, from)
	v := dead.Get(k)
	if v == nil {
		return 0, ErrNotFound
	}
	d, entries, err := DecodeDead(k, v)
	if err != nil {
		return 0, err
	}
	if resend {
		err = restore(tx, c, stream, entries)
	} else {
		err = AddPending(meta, stream, d.From, d.To)
		c.Purged += uint64(len(entries))
	}
	if err != nil {
		return d.To, err
	}
	if err := dead.Delete(k); err != nil {
		return d.To, fmt.Errorf("failed to delete dead letter: %w", err)
	}
	return d.To, nil
}

// restore puts dead-lettered readings back into their stream's bucket.
func restore(tx *bolt.Tx, c *Counters, stream reading.StreamID, entries []DeadEntry) error {
	sb, err := tx.CreateBucketIfNotExists(StreamBucket(stream))
	if err != nil {
		return fmt.Errorf("failed to recreate stream bucket: %w", err)
	}
	for _, e := range entries {
		val := append([]byte(nil), e.Value...)
		if err := sb.Put(Itob(e.Seq), val); err != nil {
			return fmt.Errorf("failed to restore seq %d: %w", e.Seq, err)
		}
		c.Readings++
		c.Bytes += uint64(8 + len(val) + EntryOverhead)
	}
	return nil
}
