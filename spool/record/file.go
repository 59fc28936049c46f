package record

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
)

// Init writes the meta bucket of a new file, at FormatVersion, with live
// the file's first stream, and that stream's bucket.
func Init(tx *bolt.Tx, live Stream, quarantined uint64) error {
	meta, err := tx.CreateBucket(BucketMeta)
	if err != nil {
		return fmt.Errorf("failed to create meta bucket: %w", err)
	}
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{KeyFormat, FormatVersion}, {KeyStream, uint64(live.ID)}, {KeyQuarantined, quarantined}} {
		if err := PutU64(meta, kv.k, kv.v); err != nil {
			return err
		}
	}
	if err := PutStream(meta, live); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(StreamBucket(live.ID)); err != nil {
		return fmt.Errorf("failed to create stream bucket: %w", err)
	}
	return nil
}

// State is what a spool file records about itself: all the spool reads
// at open (never the backlog).
type State struct {
	Table    *Table
	Stream   reading.StreamID // the live stream
	Streams  []Stream         // oldest first
	Seq      uint64           // the live stream's seq high-water mark
	Counters Counters
}

// ReadState reads the state of a file whose format the caller has
// checked. An error wraps ErrCorrupt.
func ReadState(tx *bolt.Tx) (State, error) {
	var st State
	meta := tx.Bucket(BucketMeta)
	st.Stream = reading.StreamID(GetU64(meta, KeyStream))
	st.Seq = GetU64(meta, KeySeq)
	st.Counters = ReadCounters(meta)
	var err error
	if st.Streams, err = ReadStreams(meta); err != nil {
		return st, err
	}
	if st.Stream == 0 || !slices.ContainsFunc(st.Streams, func(s Stream) bool { return s.ID == st.Stream }) {
		return st, fmt.Errorf("live stream %v not recorded: %w", st.Stream, boltfile.ErrCorrupt)
	}
	SortStreams(st.Streams)
	st.Table = NewTable()
	return st, st.Table.Load(tx)
}
