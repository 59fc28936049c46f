package spool

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
)

// FormatVersion is the version of the file format this release writes.
// Files of an older version are read; a newer one is refused with
// ErrNewerFormat.
const FormatVersion = 1

// pageSize is bbolt's page size on every machine: a Pi 5 kernel has 16 KiB
// pages, which would quadruple every write.
const pageSize = 4096

// entryOverhead is what bbolt spends per key beyond the key and value: its
// leaf element header. The logical size of a reading includes it.
const entryOverhead = 16

var (
	bucketMeta  = []byte("meta")
	bucketNames = []byte("names")
	bucketBoots = []byte("boots")
	bucketDead  = []byte("dead")

	keyFormat       = []byte("format")
	keyStream       = []byte("stream")
	keySeq          = []byte("seq")
	keyBytes        = []byte("bytes")
	keyReadings     = []byte("readings")
	keyDropped      = []byte("dropped")
	keyDeadLettered = []byte("deadlettered")
	keyPurged       = []byte("purged")
	keyQuarantined  = []byte("quarantined")
)

// Prefixes of the meta keys that hold a record per stream or per range.
// The named keys above are lower-case ASCII, so they never collide.
const (
	prefixStream  = 0x01 // 0x01 ‖ stream(8) → created ns(8) ‖ hwm(8)
	prefixPending = 0x02 // 0x02 ‖ stream(8) ‖ from(8) → to(8)
)

func itob(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func btoi(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func streamBucket(id reading.StreamID) []byte { return []byte(id.String()) }

func getU64(b *bolt.Bucket, k []byte) uint64 { return btoi(b.Get(k)) }

func putU64(b *bolt.Bucket, k []byte, v uint64) error {
	if err := b.Put(k, itob(v)); err != nil {
		return fmt.Errorf("failed to write meta %s: %w", k, err)
	}
	return nil
}

func streamKey(id reading.StreamID) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixStream}, uint64(id))
}

func pendingKey(id reading.StreamID, from uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixPending}, uint64(id))
	return binary.BigEndian.AppendUint64(k, from)
}

// streamInfo is what the meta bucket records about a stream.
type streamInfo struct {
	id      reading.StreamID
	created int64  // unix ns; the drain takes the oldest stream first
	hwm     uint64 // highest seq ever stored in it
}

func (s streamInfo) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(s.created))
	return binary.BigEndian.AppendUint64(b, s.hwm)
}

func putStream(meta *bolt.Bucket, s streamInfo) error {
	if err := meta.Put(streamKey(s.id), s.encode()); err != nil {
		return fmt.Errorf("failed to write stream %v: %w", s.id, err)
	}
	return nil
}

// deadKey is the key of a dead-letter record: stream(8) ‖ from(8).
func deadKey(id reading.StreamID, from uint64) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(id))
	return binary.BigEndian.AppendUint64(k, from)
}

// compactPath is where a compaction writes the new file before renaming it
// over the spool; a leftover is removed at open.
func compactPath(path string) string { return path + ".compact" }
