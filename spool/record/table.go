package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/spool/boltfile"
)

// Table is the in-memory copy of the names and boots buckets. Both only
// grow; the writer adds entries inside its commit and forgets them again if
// the commit fails. Its methods are safe for concurrent use; a reader that
// looks up several entries holds RLock around them.
type Table struct {
	mu      sync.RWMutex
	ids     map[string]uint32
	series  []Series
	bootIDs map[[16]byte]uint32
	boots   []Boot
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{ids: map[string]uint32{}, bootIDs: map[[16]byte]uint32{}}
}

// Load reads the names and boots buckets of tx into t.
func (t *Table) Load(tx *bolt.Tx) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	err := eachEntry(tx, BucketNames, "names", len(t.series), func(v []byte) error {
		s, err := DecodeSeries(v)
		if err != nil {
			return err
		}
		t.ids[string(v)] = uint32(len(t.series))
		t.series = append(t.series, s)
		return nil
	})
	if err != nil {
		return err
	}
	return eachEntry(tx, BucketBoots, "boots", len(t.boots), func(v []byte) error {
		r, err := DecodeBoot(v)
		if err != nil {
			return err
		}
		t.bootIDs[r.ID] = uint32(len(t.boots))
		t.boots = append(t.boots, r)
		return nil
	})
}

// eachEntry calls add with each value of the table bucket name of tx, in
// key order, from the entry at index first on. Its keys must be the u32
// indexes first, first+1, … with no gap.
func eachEntry(tx *bolt.Tx, name []byte, what string, first int, add func(v []byte) error) error {
	b := tx.Bucket(name)
	if b == nil {
		return nil
	}
	next := uint32(first)
	return b.ForEach(func(k, v []byte) error {
		if len(k) != 4 || binary.BigEndian.Uint32(k) != next {
			return fmt.Errorf("%s table key %x out of order: %w", what, k, boltfile.ErrCorrupt)
		}
		if err := add(v); err != nil {
			return fmt.Errorf("%s table entry %x: %w", what, k, err)
		}
		next++
		return nil
	})
}

// Mark returns the table's size, for rollback.
func (t *Table) Mark() (nSeries, nBoots int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.series), len(t.boots)
}

// Rollback forgets the entries added since Mark.
func (t *Table) Rollback(nSeries, nBoots int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, id := range t.ids {
		if int(id) >= nSeries {
			delete(t.ids, k)
		}
	}
	t.series = t.series[:nSeries]
	for k, id := range t.bootIDs {
		if int(id) >= nBoots {
			delete(t.bootIDs, k)
		}
	}
	t.boots = t.boots[:nBoots]
}

// SeriesID returns the id of the encoded series key, adding it to the
// names bucket of tx when it is new. Writer only.
func (t *Table) SeriesID(tx *bolt.Tx, key []byte) (uint32, error) {
	t.mu.RLock()
	id, ok := t.ids[string(key)]
	t.mu.RUnlock()
	if ok {
		return id, nil
	}
	s, err := DecodeSeries(key)
	if err != nil {
		return 0, err
	}
	b, err := tx.CreateBucketIfNotExists(BucketNames)
	if err != nil {
		return 0, fmt.Errorf("failed to create names bucket: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	id = uint32(len(t.series))
	// bbolt keeps the value slice until the commit, and callers reuse key
	// as scratch: store a copy of our own.
	if err := b.Put(binary.BigEndian.AppendUint32(nil, id), bytes.Clone(key)); err != nil {
		return 0, fmt.Errorf("failed to add series %q: %w", s.Sensor, err)
	}
	t.ids[string(key)] = id
	t.series = append(t.series, s)
	return id, nil
}

// BootIndex returns the index of a boot id, adding it when new. Writer only.
func (t *Table) BootIndex(tx *bolt.Tx, boot [16]byte) (uint32, error) {
	t.mu.RLock()
	idx, ok := t.bootIDs[boot]
	t.mu.RUnlock()
	if ok {
		return idx, nil
	}
	b, err := tx.CreateBucketIfNotExists(BucketBoots)
	if err != nil {
		return 0, fmt.Errorf("failed to create boots bucket: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	idx = uint32(len(t.boots))
	r := Boot{ID: boot}
	if err := b.Put(binary.BigEndian.AppendUint32(nil, idx), r.Encode()); err != nil {
		return 0, fmt.Errorf("failed to add boot %v: %w", boot, err)
	}
	t.bootIDs[boot] = idx
	t.boots = append(t.boots, r)
	return idx, nil
}

// Lookup returns the series of id; the caller holds RLock.
func (t *Table) Lookup(id uint32) (Series, bool) {
	if int(id) >= len(t.series) {
		return Series{}, false
	}
	return t.series[id], true
}

// SetOffset records a committed boot offset in memory.
func (t *Table) SetOffset(boot [16]byte, offset time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if idx, ok := t.bootIDs[boot]; ok {
		t.boots[idx].OffsetKnown, t.boots[idx].Offset = true, offset
	}
}

// Offset returns the offset recorded for a boot, and whether there is one.
func (t *Table) Offset(boot [16]byte) (time.Duration, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if idx, ok := t.bootIDs[boot]; ok && t.boots[idx].OffsetKnown {
		return t.boots[idx].Offset, true
	}
	return 0, false
}

// Series returns the names table by id; the caller holds RLock.
func (t *Table) Series() []Series { return t.series }

// Boots returns the boots table by index; the caller holds RLock.
func (t *Table) Boots() []Boot { return t.boots }

// RLock locks the table for reading: the writer adds no entry meanwhile.
func (t *Table) RLock() { t.mu.RLock() }

// RUnlock undoes RLock.
func (t *Table) RUnlock() { t.mu.RUnlock() }
