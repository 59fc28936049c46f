package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// table is the in-memory copy of the names and boots buckets. Both only
// grow; the writer adds entries inside its commit and forgets them again if
// the commit fails.
type table struct {
	mu      sync.RWMutex
	ids     map[string]uint32
	series  []series
	bootIDs map[BootID]uint32
	boots   []bootRec
}

func newTable() *table {
	return &table{ids: map[string]uint32{}, bootIDs: map[BootID]uint32{}}
}

func (t *table) load(tx *bolt.Tx) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := tx.Bucket(bucketNames); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			if len(k) != 4 || binary.BigEndian.Uint32(k) != uint32(len(t.series)) {
				return fmt.Errorf("names table key %x out of order: %w", k, ErrCorrupt)
			}
			s, err := decodeSeries(v)
			if err != nil {
				return fmt.Errorf("names table entry %x: %w", k, err)
			}
			t.ids[string(v)] = uint32(len(t.series))
			t.series = append(t.series, s)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if b := tx.Bucket(bucketBoots); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			if len(k) != 4 || binary.BigEndian.Uint32(k) != uint32(len(t.boots)) {
				return fmt.Errorf("boots table key %x out of order: %w", k, ErrCorrupt)
			}
			r, err := decodeBootRec(v)
			if err != nil {
				return fmt.Errorf("boots table entry %x: %w", k, err)
			}
			t.bootIDs[r.id] = uint32(len(t.boots))
			t.boots = append(t.boots, r)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// mark returns the table's size, for rollback.
func (t *table) mark() (nSeries, nBoots int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.series), len(t.boots)
}

// rollback forgets the entries added since mark.
func (t *table) rollback(nSeries, nBoots int) {
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

// seriesID returns the id of the encoded series key, adding it to the
// names bucket of tx when it is new. Writer only.
func (t *table) seriesID(tx *bolt.Tx, key []byte) (uint32, error) {
	t.mu.RLock()
	id, ok := t.ids[string(key)]
	t.mu.RUnlock()
	if ok {
		return id, nil
	}
	s, err := decodeSeries(key)
	if err != nil {
		return 0, err
	}
	b, err := tx.CreateBucketIfNotExists(bucketNames)
	if err != nil {
		return 0, fmt.Errorf("failed to create names bucket: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	id = uint32(len(t.series))
	// bbolt keeps the value slice until the commit, and callers reuse key
	// as scratch: store a copy of our own.
	if err := b.Put(binary.BigEndian.AppendUint32(nil, id), bytes.Clone(key)); err != nil {
		return 0, fmt.Errorf("failed to add series %q: %w", s.sensor, err)
	}
	t.ids[string(key)] = id
	t.series = append(t.series, s)
	return id, nil
}

// bootIndex returns the index of a boot id, adding it when new. Writer only.
func (t *table) bootIndex(tx *bolt.Tx, boot BootID) (uint32, error) {
	t.mu.RLock()
	idx, ok := t.bootIDs[boot]
	t.mu.RUnlock()
	if ok {
		return idx, nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketBoots)
	if err != nil {
		return 0, fmt.Errorf("failed to create boots bucket: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	idx = uint32(len(t.boots))
	r := bootRec{id: boot}
	if err := b.Put(binary.BigEndian.AppendUint32(nil, idx), r.encode()); err != nil {
		return 0, fmt.Errorf("failed to add boot %v: %w", boot, err)
	}
	t.bootIDs[boot] = idx
	t.boots = append(t.boots, r)
	return idx, nil
}

// lookup returns the series of id; the caller holds t.mu for reading.
func (t *table) lookup(id uint32) (series, bool) {
	if int(id) >= len(t.series) {
		return series{}, false
	}
	return t.series[id], true
}

// setOffset records a committed boot offset in memory.
func (t *table) setOffset(boot BootID, offset time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if idx, ok := t.bootIDs[boot]; ok {
		t.boots[idx].offsetKnown, t.boots[idx].offset = true, offset
	}
}
