// Package boltsurgeon damages bbolt files on purpose, for the tests of the
// code that must survive such damage (bbolt keeps a surgeon of its own for
// its tests). It reads bbolt's page layout itself, apart from the walker in
// spool/boltfile, so that a test does not agree with the code it checks
// by construction.
//
// The layout it patches is bbolt's, in the machine's byte order: a page
// header of id u64, flags u16, count u16, overflow u32, then branch
// elements of pos u32, ksize u32, pgid u64 (pos counts from the element's
// own offset).
package boltsurgeon

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	pageHeaderSize = 16
	branchElemSize = 16
	branchPageFlag = 0x01
)

var ne = binary.NativeEndian

// CycleBucket patches the root page of the top-level bucket name in the
// closed bbolt file at path, which must be a branch page with at least
// three children, so that its last child pointer leads back to the root
// itself: a page cycle, on which bbolt's cursor descends forever. It
// returns the first key of the child that was cut off: the keys from it on
// are no longer reachable, those below it still are.
func CycleBucket(path string, name []byte) (lost []byte, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	var root uint64
	psize := int64(db.Info().PageSize)
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(name)
		if b == nil {
			return fmt.Errorf("no bucket %q", name)
		}
		root = uint64(b.Root())
		return nil
	})
	db.Close()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page := make([]byte, psize)
	if _, err := f.ReadAt(page, int64(root)*psize); err != nil {
		return nil, err
	}
	flags, count := ne.Uint16(page[8:]), int(ne.Uint16(page[10:]))
	if flags != branchPageFlag || count < 3 {
		return nil, fmt.Errorf("bucket %q root page %d: flags %#x, %d elements; want a branch page with at least 3 children", name, root, flags, count)
	}
	off := pageHeaderSize + (count-1)*branchElemSize
	pos, ksize := int(ne.Uint32(page[off:])), int(ne.Uint32(page[off+4:]))
	lost = bytes.Clone(page[off+pos : off+pos+ksize])
	ne.PutUint64(page[off+8:], root) // the last child is the root itself
	if _, err := f.WriteAt(page, int64(root)*psize); err != nil {
		return nil, err
	}
	return lost, f.Sync()
}
