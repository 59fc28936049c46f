package boltfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
)

// A torn or garbled bbolt file can hold a branch page whose child pointer
// leads back to one of its ancestors. bbolt's cursor follows it forever
// (Cursor.Last, First, Seek and Next all descend without a visited set),
// at full CPU, out of reach of any recover. The walker below reads the
// B+tree straight from the file, page by page, with a set of the pages it
// has reached: it never reaches a page twice, so it always ends. It checks
// a file before a bbolt cursor walks it, and salvage copies what it can
// reach through it into a clean file.
//
// The layout it reads is bbolt's (go.etcd.io/bbolt internal/common), in
// the machine's byte order:
//
//	page header (16 bytes):   id u64, flags u16, count u16, overflow u32
//	meta (after the header):  magic u32, version u32, pageSize u32, flags u32,
//	                          root bucket {root pgid u64, sequence u64},
//	                          freelist u64, pgid (high water) u64, txid u64,
//	                          checksum u64 (FNV-64a of the 56 bytes before it)
//	branch element (16):      pos u32, ksize u32, pgid u64
//	leaf element (16):        flags u32, pos u32, ksize u32, vsize u32
//	                          (pos counts from the element's own offset)
//	bucket value:             root pgid u64, sequence u64, then an inline
//	                          leaf page when root is 0
const (
	pageHeaderSize   = 16
	pageElemSize     = 16
	bucketHeaderSize = 16
	metaChecksumOff  = 56
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	bucketLeafFlag   = 0x01
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	maxTreeDepth     = 64 // far beyond any real tree: a deeper one is corrupt
	maxWalkProblems  = 20
)

var ne = binary.NativeEndian

// rawFile is a bbolt file opened for the walker: its page size and the
// root and high-water page of the meta page bbolt would use.
type rawFile struct {
	f      *os.File
	size   int64
	psize  int64
	root   uint64
	hwm    uint64
	bucket uint64 // the root bucket's sequence
}

func openRaw(path string) (*rawFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r := &rawFile{f: f, size: fi.Size()}
	if err := r.readMeta(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func (r *rawFile) Close() error { return r.f.Close() }

// rawMeta is the part of a meta page the walker uses.
type rawMeta struct {
	psize, root, seq, hwm, txid uint64
}

// meta reads the meta page at off; ok is false when it does not validate.
func (r *rawFile) meta(off int64) (m rawMeta, ok bool) {
	var b [pageHeaderSize + metaChecksumOff + 8]byte
	if _, err := r.f.ReadAt(b[:], off); err != nil {
		return m, false
	}
	mb := b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(mb[:metaChecksumOff])
	if ne.Uint32(mb[0:]) != boltMagic || ne.Uint32(mb[4:]) != boltVersion || ne.Uint64(mb[metaChecksumOff:]) != h.Sum64() {
		return m, false
	}
	m = rawMeta{psize: uint64(ne.Uint32(mb[8:])), root: ne.Uint64(mb[16:]), seq: ne.Uint64(mb[24:]),
		hwm: ne.Uint64(mb[40:]), txid: ne.Uint64(mb[48:])}
	return m, m.psize >= 512 && m.psize <= 1<<20 && m.psize&(m.psize-1) == 0
}

// readMeta picks the meta page as bbolt does: the valid one with the
// higher txid.
func (r *rawFile) readMeta() error {
	m0, ok0 := r.meta(0)
	psizes := []uint64{m0.psize}
	if !ok0 {
		psizes = []uint64{4096, uint64(os.Getpagesize()), 8192, 16384, 65536} // the spool's first
	}
	var m1 rawMeta
	ok1 := false
	for _, ps := range psizes {
		if m1, ok1 = r.meta(int64(ps)); ok1 && (!ok0 || m1.psize == m0.psize) {
			break
		}
		ok1 = false
	}
	m := m0
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		m = m1
	case !ok0:
		return fmt.Errorf("no valid meta page: %w", ErrCorrupt)
	}
	r.psize, r.root, r.bucket, r.hwm = int64(m.psize), m.root, m.seq, m.hwm
	return nil
}

// walker walks the trees of a rawFile, never reaching a page twice.
type walker struct {
	r        *rawFile
	seen     map[uint64]bool
	problems []string
	dropped  int // problems beyond maxWalkProblems
	// fn, when set, is called for every key reached, in key order within
	// each bucket; path names the bucket (nested buckets: its parents
	// first). For a bucket key, value is nil and seq its sequence.
	fn func(path [][]byte, key, value []byte, bucket bool, seq uint64) error
	// err is the first error fn returned; the walk stops at it.
	err error
}

func newWalker(r *rawFile) *walker { return &walker{r: r, seen: make(map[uint64]bool)} }

func (w *walker) problem(format string, args ...any) {
	if len(w.problems) == maxWalkProblems {
		w.dropped++
		return
	}
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
}

// walk walks every bucket from the root bucket.
func (w *walker) walk() {
	w.tree(nil, w.r.root, 0)
}

// page reads page id with its overflow pages, checking that it is in the
// file, not reached before, and a branch or leaf page whose elements fit.
func (w *walker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.r.hwm {
		return nil, fmt.Errorf("page %d: out of range [2, %d)", id, w.r.hwm)
	}
	if w.seen[id] {
		return nil, fmt.Errorf("page %d: reached twice (a cycle or a shared page)", id)
	}
	w.seen[id] = true
	var hdr [pageHeaderSize]byte
	if _, err := w.r.f.ReadAt(hdr[:], int64(id)*w.r.psize); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	pid, flags, count, overflow := ne.Uint64(hdr[0:]), ne.Uint16(hdr[8:]), int64(ne.Uint16(hdr[10:])), uint64(ne.Uint32(hdr[12:]))
	switch {
	case pid != id:
		return nil, fmt.Errorf("page %d: header names page %d", id, pid)
	case flags != branchPageFlag && flags != leafPageFlag:
		return nil, fmt.Errorf("page %d: neither branch nor leaf (flags %#x)", id, flags)
	case id+overflow >= w.r.hwm:
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high water mark %d", id, overflow, w.r.hwm)
	}
	for i := uint64(1); i <= overflow; i++ {
		if w.seen[id+i] {
			return nil, fmt.Errorf("page %d: overflow page %d reached twice", id, id+i)
		}
		w.seen[id+i] = true
	}
	n := int64(overflow+1) * w.r.psize
	if pageHeaderSize+count*pageElemSize > n {
		return nil, fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	buf := make([]byte, n)
	if _, err := w.r.f.ReadAt(buf, int64(id)*w.r.psize); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("past the end of the file: %w", ErrCorrupt)
		}
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

// tree walks the keys of the tree whose root is page id, of the bucket
// at path.
func (w *walker) tree(path [][]byte, id uint64, depth int) {
	if w.err != nil {
		return
	}
	if depth > maxTreeDepth {
		w.problem("page %d: deeper than %d levels", id, maxTreeDepth)
		return
	}
	p, err := w.page(id)
	if err != nil {
		w.problem("%v", err)
		return
	}
	count := int(ne.Uint16(p[10:]))
	if ne.Uint16(p[8:]) == leafPageFlag {
		w.leaf(path, p, depth)
		return
	}
	for i := range count {
		e := p[pageHeaderSize+i*pageElemSize:]
		w.tree(path, ne.Uint64(e[8:]), depth+1)
	}
}

// leaf walks the keys of the leaf page p (a page of the file or an inline
// bucket's), descending into the buckets it holds.
func (w *walker) leaf(path [][]byte, p []byte, depth int) {
	count := int(ne.Uint16(p[10:]))
	for i := range count {
		if w.err != nil {
			return
		}
		off := pageHeaderSize + i*pageElemSize
		if off+pageElemSize > len(p) {
			w.problem("leaf page %d: element %d past the page", ne.Uint64(p[0:]), i)
			return
		}
		e := p[off:]
		flags, pos, ksize, vsize := ne.Uint32(e[0:]), uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		start := uint64(off) + pos
		if start+ksize+vsize > uint64(len(p)) {
			w.problem("leaf page %d: element %d past the page", ne.Uint64(p[0:]), i)
			continue
		}
		k, v := p[start:start+ksize], p[start+ksize:start+ksize+vsize]
		if flags&bucketLeafFlag == 0 {
			if w.fn != nil && len(path) > 0 {
				w.err = w.fn(path, k, v, false, 0)
			}
			continue
		}
		if len(v) < bucketHeaderSize {
			w.problem("leaf page %d: bucket %q has a short header", ne.Uint64(p[0:]), k)
			continue
		}
		if w.fn != nil {
			if w.err = w.fn(path, k, nil, true, ne.Uint64(v[8:])); w.err != nil {
				return
			}
		}
		sub := append(path[:len(path):len(path)], k)
		if root := ne.Uint64(v[0:]); root != 0 {
			w.tree(sub, root, depth+1)
			continue
		}
		inline := v[bucketHeaderSize:]
		if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != leafPageFlag {
			w.problem("leaf page %d: inline bucket %q is no leaf page", ne.Uint64(p[0:]), k)
			continue
		}
		w.leaf(sub, inline, depth+1)
	}
}

// corrupt returns the problems found as one error wrapping ErrCorrupt, or nil.
func (w *walker) corrupt() error {
	if len(w.problems) == 0 {
		return nil
	}
	more := ""
	if w.dropped > 0 {
		more = fmt.Sprintf(" (and %d more)", w.dropped)
	}
	return fmt.Errorf("%s%s: %w", w.problems[0], more, ErrCorrupt)
}

// CheckPages walks the B+tree of the bbolt file at path from its meta
// page, reading the file directly, and returns an error wrapping
// ErrCorrupt naming the first page reached twice (a cycle a bbolt cursor
// would loop on), out of range or malformed. It reads every branch and
// leaf page once.
func CheckPages(path string) error {
	r, err := openRaw(path)
	if err != nil {
		return err
	}
	defer r.Close()
	w := newWalker(r)
	w.walk()
	return w.corrupt()
}

// RebuildReachable copies every bucket and key of the bbolt file src that
// the walker reaches into a new bbolt file dst (replaced if it exists),
// skipping the damaged pages, and returns what it skipped. dst is written
// without fsync: it is a scratch copy.
func RebuildReachable(src, dst string) (problems []string, err error) {
	r, err := openRaw(src)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	_ = os.Remove(dst)
	db, err := bolt.Open(dst, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, PageSize: int(r.psize)})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dst, err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", dst, cerr)
		}
	}()
	tx, err := db.Begin(true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	const perTx = 10000
	n := 0
	w := newWalker(r)
	w.fn = func(path [][]byte, key, value []byte, bucket bool, seq uint64) error {
		if n++; n%perTx == 0 {
			if err := tx.Commit(); err != nil {
				tx = nil
				return err
			}
			next, err := db.Begin(true)
			if err != nil {
				tx = nil
				return err
			}
			tx = next
		}
		var b *bolt.Bucket
		for i, name := range path {
			if i == 0 {
				b = tx.Bucket(name)
			} else if b != nil {
				b = b.Bucket(name)
			}
		}
		if !bucket {
			if b == nil {
				return nil // its bucket's key was unreadable
			}
			if err := b.Put(key, value); err != nil {
				return fmt.Errorf("copy key %x: %w", key, err)
			}
			return nil
		}
		var (
			nb  *bolt.Bucket
			err error
		)
		switch {
		case len(path) == 0:
			nb, err = tx.CreateBucketIfNotExists(key)
		case b != nil:
			nb, err = b.CreateBucketIfNotExists(key)
		default:
			return nil
		}
		if err != nil {
			return fmt.Errorf("copy bucket %q: %w", key, err)
		}
		return nb.SetSequence(seq)
	}
	w.walk()
	if w.err != nil {
		return w.problems, fmt.Errorf("rebuild %s: %w", dst, w.err)
	}
	err = tx.Commit()
	tx = nil
	if err != nil {
		return w.problems, fmt.Errorf("rebuild %s: %w", dst, err)
	}
	if w.dropped > 0 {
		w.problems = append(w.problems, fmt.Sprintf("and %d more damaged pages", w.dropped))
	}
	return w.problems, nil
}
