package record

import (
	"fmt"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
)

// Load checks the format of the spool file db, writes the buckets of a new
// (empty) file, with the stream newStream returns as its first, raises the
// file's quarantined count to quarantined, and reads its state (never the
// backlog). It writes, and fsyncs, only what changes. An error names
// "open <path>" (or "load <path>" for a bbolt panic) and wraps ErrCorrupt
// or ErrNewerFormat when the file is the cause.
func Load(db *bolt.DB, quarantined uint64, newStream func() Stream) (st State, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("load %s: bbolt panic: %v: %w", db.Path(), p, boltfile.ErrCorrupt)
		}
	}()
	var (
		write   func(tx *bolt.Tx) error
		created bool
	)
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(BucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("no meta bucket: not a spool file: %w", boltfile.ErrCorrupt)
			}
			write = func(tx *bolt.Tx) error { return Init(tx, newStream(), quarantined) }
			created = true
			return nil
		}
		v := GetU64(meta, KeyFormat)
		if v > FormatVersion {
			return fmt.Errorf("%w: version %d, this release reads up to %d", ErrNewerFormat, v, FormatVersion)
		}
		if v == 0 {
			return fmt.Errorf("meta has no format version: %w", boltfile.ErrCorrupt)
		}
		if quarantined > GetU64(meta, KeyQuarantined) {
			write = func(tx *bolt.Tx) error { return PutU64(tx.Bucket(BucketMeta), KeyQuarantined, quarantined) }
		}
		return nil
	})
	if err == nil && write != nil {
		err = db.Update(write)
	}
	if err == nil && created {
		// A new file's name is durable only once its directory is
		// synced; until then a power cut can take the file and every
		// reading committed in it.
		boltfile.SyncDir(filepath.Dir(db.Path()))
	}
	if err == nil {
		err = db.View(func(tx *bolt.Tx) (err error) {
			st, err = ReadState(tx)
			return err
		})
	}
	if err != nil {
		return st, fmt.Errorf("open %s: %w", db.Path(), err)
	}
	return st, nil
}

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
