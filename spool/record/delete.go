package record

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// DeleteRange deletes the readings with seq in [from, to] from b and
// returns how many it deleted and their logical size.
//
// It deletes from the top down: bbolt removes a key by shifting the keys
// after it in its leaf, so deleting the last one shifts nothing, and the
// cursor steps back to the next key without seeking from the root again.
// (After Cursor.Delete, the keys below the deleted one have not moved, so
// stepping back finds the next one.) Stepping back stops at the first key,
// and also at a leaf that an earlier delete of the same transaction
// emptied: what may be left below such a leaf is deleted seek by seek.
func DeleteRange(b *bolt.Bucket, from, to uint64) (n, size uint64, err error) {
	c := b.Cursor()
	k, v := c.Seek(Itob(to))
	switch {
	case k == nil:
		k, v = c.Last()
	case len(k) == 8 && Btoi(k) > to:
		k, v = c.Prev()
	}
	below := to // the seqs from–below may still hold readings
	for ; k != nil; k, v = c.Prev() {
		seq := Btoi(k)
		if len(k) != 8 || seq < from || seq > below {
			return n, size, nil
		}
		size += uint64(len(k) + len(v) + EntryOverhead)
		if err := c.Delete(); err != nil {
			return n, size, fmt.Errorf("failed to delete seq %d: %w", seq, err)
		}
		n++
		if seq == from {
			return n, size, nil
		}
		below = seq - 1
	}
	rn, rsize, err := deleteUp(b, from, below)
	return n + rn, size + rsize, err
}

// deleteUp deletes the readings with seq in [from, to] from b, lowest
// first, seeking each from the root (which skips emptied leaves).
func deleteUp(b *bolt.Bucket, from, to uint64) (n, size uint64, err error) {
	c := b.Cursor()
	for k, v := c.Seek(Itob(from)); k != nil; k, v = c.Seek(Itob(from)) {
		seq := Btoi(k)
		if seq > to || len(k) != 8 {
			break
		}
		size += uint64(len(k) + len(v) + EntryOverhead)
		if err := c.Delete(); err != nil {
			return n, size, fmt.Errorf("failed to delete seq %d: %w", seq, err)
		}
		n++
		from = seq + 1
		if seq == to {
			break
		}
	}
	return n, size, nil
}
