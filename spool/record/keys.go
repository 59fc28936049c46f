package record

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
)

// FormatVersion is the version of the file format this release writes.
// Files of an older version are read; a newer one is refused.
const FormatVersion = 1

// PageSize is bbolt's page size on every machine: a Pi 5 kernel has 16 KiB
// pages, which would quadruple every write.
const PageSize = 4096

// EntryOverhead is what bbolt spends per key beyond the key and value: its
// leaf element header. The logical size of a reading includes it.
const EntryOverhead = 16

// The top-level buckets and the named keys of the meta bucket.
var (
	BucketMeta  = []byte("meta")
	BucketNames = []byte("names")
	BucketBoots = []byte("boots")
	BucketDead  = []byte("dead")

	KeyFormat       = []byte("format")
	KeyStream       = []byte("stream")
	KeySeq          = []byte("seq")
	KeyBytes        = []byte("bytes")
	KeyReadings     = []byte("readings")
	KeyDropped      = []byte("dropped")
	KeyDeadLettered = []byte("deadlettered")
	KeyPurged       = []byte("purged")
	KeyQuarantined  = []byte("quarantined")
)

// Prefixes of the meta keys that hold a record per stream or per range.
// The named keys above are lower-case ASCII, so they never collide.
const (
	PrefixStream  = 0x01 // 0x01 ‖ stream(8) → created ns(8) ‖ hwm(8)
	PrefixPending = 0x02 // 0x02 ‖ stream(8) ‖ from(8) → to(8)
)

// Itob encodes v as 8 bytes big-endian: a seq key, or a meta value.
func Itob(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// Btoi decodes what Itob encoded; it returns 0 for anything not 8 bytes
// long.
func Btoi(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// StreamBucket is the name of a stream's bucket: its id in 16 hex digits.
func StreamBucket(id reading.StreamID) []byte { return []byte(id.String()) }

// GetU64 reads the meta value under k (0 when absent).
func GetU64(b *bolt.Bucket, k []byte) uint64 { return Btoi(b.Get(k)) }

// PutU64 writes the meta value under k.
func PutU64(b *bolt.Bucket, k []byte, v uint64) error {
	if err := b.Put(k, Itob(v)); err != nil {
		return fmt.Errorf("failed to write meta %s: %w", k, err)
	}
	return nil
}

// StreamKey is the meta key of a stream's record.
func StreamKey(id reading.StreamID) []byte {
	return binary.BigEndian.AppendUint64([]byte{PrefixStream}, uint64(id))
}

// PendingKey is the meta key of a pending range of a stream from seq from.
func PendingKey(id reading.StreamID, from uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{PrefixPending}, uint64(id))
	return binary.BigEndian.AppendUint64(k, from)
}

// DeadKey is the key of a dead-letter record: stream(8) ‖ from(8).
func DeadKey(id reading.StreamID, from uint64) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(id))
	return binary.BigEndian.AppendUint64(k, from)
}
