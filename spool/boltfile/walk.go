package boltfile

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// WalkBucket touches every key and value of b and its sub-buckets, so
// that a page a fault or a panic lies in is met by the caller (who has
// turned faults into panics and recovers them), not by bbolt's freelist
// rebuild in a goroutine of its own. Run CheckPages first: bbolt's cursor
// loops forever on a page cycle.
func WalkBucket(b *bolt.Bucket) error {
	c := b.Cursor()
	var sum byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			sb := b.Bucket(k)
			if sb == nil {
				return fmt.Errorf("key %x: nil value that is no bucket: %w", k, ErrCorrupt)
			}
			if err := WalkBucket(sb); err != nil {
				return err
			}
			continue
		}
		if len(v) > 0 {
			sum ^= v[0] ^ v[len(v)-1]
		}
	}
	_ = sum
	return nil
}
