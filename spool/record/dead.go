package record

import (
	"encoding/binary"
	"fmt"
	"time"

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
