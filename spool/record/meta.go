package record

import (
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
)

// Stream is what the meta bucket records about a stream.
type Stream struct {
	ID      reading.StreamID
	Created int64  // unix ns; the drain takes the oldest stream first
	HWM     uint64 // highest seq ever stored in it
}

func (s Stream) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(s.Created))
	return binary.BigEndian.AppendUint64(b, s.HWM)
}

// PutStream writes the record of s.
func PutStream(meta *bolt.Bucket, s Stream) error {
	if err := meta.Put(StreamKey(s.ID), s.encode()); err != nil {
		return fmt.Errorf("failed to write stream %v: %w", s.ID, err)
	}
	return nil
}

// ParseStream decodes the stream record k → v; ok is false when it is
// malformed.
func ParseStream(k, v []byte) (s Stream, ok bool) {
	if len(k) != 9 || k[0] != PrefixStream || len(v) != 16 {
		return s, false
	}
	return Stream{ID: reading.StreamID(Btoi(k[1:])), Created: int64(Btoi(v[:8])), HWM: Btoi(v[8:])}, true
}

// ReadStreams returns the well-formed stream records of meta in key order,
// and an error wrapping ErrCorrupt naming the first malformed one.
func ReadStreams(meta *bolt.Bucket) ([]Stream, error) {
	var (
		out []Stream
		bad error
	)
	c := meta.Cursor()
	for k, v := c.Seek([]byte{PrefixStream}); k != nil && k[0] == PrefixStream; k, v = c.Next() {
		s, ok := ParseStream(k, v)
		if !ok {
			if bad == nil {
				bad = fmt.Errorf("stream record %x: %w", k, boltfile.ErrCorrupt)
			}
			continue
		}
		out = append(out, s)
	}
	return out, bad
}

// SortStreams sorts streams oldest first, the order they drain in.
func SortStreams(ss []Stream) {
	slices.SortFunc(ss, func(a, b Stream) int {
		if a.Created != b.Created {
			return cmpInt64(a.Created, b.Created)
		}
		return cmpInt64(int64(a.ID>>1), int64(b.ID>>1))
	})
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Counters are the meta bucket's counters.
type Counters struct {
	Bytes, Readings                            uint64 // logical size and count of the stored readings
	Dropped, DeadLettered, Purged, Quarantined uint64
}

// ReadCounters reads the counters of meta.
func ReadCounters(meta *bolt.Bucket) Counters {
	return Counters{
		Bytes:        GetU64(meta, KeyBytes),
		Readings:     GetU64(meta, KeyReadings),
		Dropped:      GetU64(meta, KeyDropped),
		DeadLettered: GetU64(meta, KeyDeadLettered),
		Purged:       GetU64(meta, KeyPurged),
		Quarantined:  GetU64(meta, KeyQuarantined),
	}
}

// WriteCounters writes the counters that changed, all but Quarantined
// (which only the open of a file writes).
func WriteCounters(meta *bolt.Bucket, c Counters) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{KeyBytes, c.Bytes}, {KeyReadings, c.Readings}, {KeyDropped, c.Dropped},
		{KeyDeadLettered, c.DeadLettered}, {KeyPurged, c.Purged}} {
		if GetU64(meta, kv.k) == kv.v {
			continue
		}
		if err := PutU64(meta, kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// AddPending records a seq range as dropped and not yet reported, merged
// with the range just before it when they touch.
func AddPending(meta *bolt.Bucket, stream reading.StreamID, from, to uint64) error {
	c := meta.Cursor()
	c.Seek(PendingKey(stream, from))
	if k, v := c.Prev(); len(k) == 17 && k[0] == PrefixPending && reading.StreamID(Btoi(k[1:9])) == stream && Btoi(v)+1 == from {
		if err := meta.Put(PendingKey(stream, Btoi(k[9:])), Itob(to)); err != nil {
			return fmt.Errorf("failed to extend dropped range: %w", err)
		}
		return nil
	}
	if err := meta.Put(PendingKey(stream, from), Itob(to)); err != nil {
		return fmt.Errorf("failed to record dropped range: %w", err)
	}
	return nil
}

// RemovePending removes a reported range. If the stored range grew since
// it was reported, the unreported rest stays pending.
func RemovePending(meta *bolt.Bucket, stream reading.StreamID, from, to uint64) error {
	k := PendingKey(stream, from)
	v := meta.Get(k)
	if v == nil {
		return nil
	}
	stored := Btoi(v)
	if err := meta.Delete(k); err != nil {
		return fmt.Errorf("failed to remove reported range: %w", err)
	}
	if stored > to {
		if err := meta.Put(PendingKey(stream, to+1), Itob(stored)); err != nil {
			return fmt.Errorf("failed to keep unreported range: %w", err)
		}
	}
	return nil
}
