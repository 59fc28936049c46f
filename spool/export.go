package spool

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

// eachChunk is how many readings one read transaction of Each covers: a
// long export never holds a transaction (and so the file's mmap) for the
// whole backlog.
const eachChunk = 1000

// Each calls fn with every committed reading not yet acknowledged, oldest
// stream first and in seq order, without handing anything out: it is what
// `outpost spool peek` and `export` read. It stops after limit readings
// (0: all), when fn returns an error, or when ctx ends.
func (s *Spool) Each(ctx context.Context, limit int, fn func(*reading.Reading) error) error {
	s.mu.Lock()
	streams := append([]record.Stream(nil), s.streams...)
	s.mu.Unlock()
	seen := 0
	for _, si := range streams {
		next := uint64(1)
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			chunk, err := s.readChunk(si.ID, next, eachChunk)
			if err != nil {
				return fmt.Errorf("spool: each: %w", err)
			}
			for i := range chunk {
				if limit > 0 && seen == limit {
					return nil
				}
				seen++
				if err := fn(&chunk[i]); err != nil {
					return err
				}
			}
			if len(chunk) < eachChunk {
				break
			}
			next = chunk[len(chunk)-1].Seq + 1
		}
	}
	return nil
}

// readChunk decodes up to n readings of a stream from seq from on.
func (s *Spool) readChunk(stream reading.StreamID, from uint64, n int) ([]reading.Reading, error) {
	var out []reading.Reading
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(record.StreamBucket(stream))
		if b == nil {
			return nil
		}
		s.tab.RLock()
		defer s.tab.RUnlock()
		c := b.Cursor()
		for k, v := c.Seek(record.Itob(from)); k != nil && len(out) < n; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("stream %v: key %x: %w", stream, k, ErrCorrupt)
			}
			r, err := s.decode(stream, record.Btoi(k), v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// PendingDropped returns the seq ranges dropped, dead-lettered or purged
// that have not been reported upstream yet.
func (s *Spool) PendingDropped() ([]reading.Dropped, error) {
	var out []reading.Dropped
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(record.BucketMeta).Cursor()
		prefix := []byte{record.PrefixPending}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == 17; k, v = c.Next() {
			out = append(out, reading.Dropped{Device: s.opts.Device, Stream: reading.StreamID(record.Btoi(k[1:9])), From: record.Btoi(k[9:]), To: record.Btoi(v)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: pending dropped: %w", err)
	}
	return out, nil
}
