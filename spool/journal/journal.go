// Package journal is the spool's pre-commit journal: an append-only file
// beside the spool (<spool path>.journal) that hands each reading and each
// acknowledgement to the kernel as it happens, so that a crash of the
// process (kill -9, panic, OOM kill) between two group commits loses
// nothing. It is never fsynced except when created: a power cut may take
// what it holds, which the spool's commit interval bounds.
//
// # Format
//
// A 24-byte header, then records:
//
//	header: "OPJ1" | version u16 | flags u16 | generation u64 | start u32 | CRC u32
//	record: length u32 | CRC u32 | payload (length bytes)
//
// all little-endian. The header's CRC is CRC-32C (Castagnoli) of its first
// 20 bytes; a record's is CRC-32C of generation ‖ length ‖ payload. The
// generation's records begin at start. The file is emptied in place by
// writing a header with a new random generation, not truncated, so
// records of an older generation stay behind: their CRC names another
// generation and they never replay. Replay stops at the first record that
// fails its check (a torn record, a zero length, an old generation): what
// follows it is never read.
//
// Reset can carry records over into the new generation (readings appended
// while a commit ran): it writes them where they overlap none of the
// current generation's records (at the front when they fit before its
// start, else after its end), then flips the header with one pwrite, so a
// crash at any point leaves one whole generation or the other.
//
// The file is preallocated (64 KiB, grown by doubling) and written
// through a shared mmap, or with pwrite where mapping fails. A Journal is
// not safe for concurrent use: the spool calls it under its own lock.
package journal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Layout.
const (
	HeaderSize  = 24
	recordHead  = 8
	version     = 1
	initialSize = 64 << 10
	// MaxPayload bounds one record; a longer length is taken as garbage.
	MaxPayload = 1 << 20
)

var magic = [4]byte{'O', 'P', 'J', '1'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned by Append for a payload above MaxPayload.
var ErrTooLarge = errors.New("journal: record too large")

// Journal is an open journal file.
type Journal struct {
	f     *os.File
	path  string
	m     []byte // the shared mapping of the whole file; nil: pwrite
	size  int64  // file size (preallocated)
	off   int64  // where the next record goes
	start int64  // where the generation's records begin
	gen   uint64
	crc   uint32 // CRC-32C of gen, the start of every record's CRC
	head  [recordHead]byte
	img   []byte // Reset's scratch
}

// Path returns the journal's file name for a spool file.
func Path(spool string) string { return spool + ".journal" }

// Open opens the journal at path, creating it (durably: file and
// directory are fsynced) when it does not exist or holds no valid header.
// Its records are left for Replay; the next Reset empties it.
func Open(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{f: f, path: path}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	j.size = fi.Size()
	var h [HeaderSize]byte
	valid := false
	if j.size >= initialSize {
		if _, err := f.ReadAt(h[:], 0); err == nil {
			j.gen, j.start, valid = parseHeader(h[:], j.size)
		}
	}
	if !valid {
		if err := j.create(); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	j.setGen(j.gen)
	if m, err := unix.Mmap(int(f.Fd()), 0, int(j.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		j.m = m
	}
	_, end, err := j.replay(func([]byte) error { return nil })
	if err != nil {
		_ = j.Close()
		return nil, err
	}
	j.off = end
	return j, nil
}

// create makes a fresh, empty journal of initialSize and syncs it and its
// directory.
func (j *Journal) create() error {
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("journal: create %s: %w", j.path, err)
	}
	if err := j.allocate(0, initialSize); err != nil {
		return err
	}
	j.size = initialSize
	gen, err := newGen()
	if err != nil {
		return err
	}
	j.gen, j.start = gen, HeaderSize
	h := header(gen, HeaderSize)
	if _, err := j.f.WriteAt(h[:], 0); err != nil {
		return fmt.Errorf("journal: create %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: create %s: %w", j.path, err)
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// allocate backs [from, to) with disk blocks, or, where the file system
// cannot (ENOTSUP), grows the file with ftruncate.
func (j *Journal) allocate(from, to int64) error {
	err := unix.Fallocate(int(j.f.Fd()), 0, from, to-from)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = j.f.Truncate(to)
	}
	if err != nil {
		return fmt.Errorf("journal: grow %s to %d bytes: %w", j.path, to, err)
	}
	return nil
}

func newGen() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("journal: generation: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func header(gen uint64, start int64) [HeaderSize]byte {
	var h [HeaderSize]byte
	copy(h[:4], magic[:])
	binary.LittleEndian.PutUint16(h[4:], version)
	binary.LittleEndian.PutUint64(h[8:], gen)
	binary.LittleEndian.PutUint32(h[16:], uint32(start))
	binary.LittleEndian.PutUint32(h[20:], crc32.Checksum(h[:20], castagnoli))
	return h
}

// parseHeader returns the generation and start of a valid header of a
// file of size bytes.
func parseHeader(h []byte, size int64) (gen uint64, start int64, ok bool) {
	if len(h) < HeaderSize || [4]byte(h[:4]) != magic ||
		binary.LittleEndian.Uint16(h[4:]) != version ||
		binary.LittleEndian.Uint32(h[20:]) != crc32.Checksum(h[:20], castagnoli) {
		return 0, 0, false
	}
	start = int64(binary.LittleEndian.Uint32(h[16:]))
	if start < HeaderSize || start > size {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(h[8:]), start, true
}

func (j *Journal) setGen(gen uint64) {
	j.gen = gen
	var g [8]byte
	binary.LittleEndian.PutUint64(g[:], gen)
	j.crc = crc32.Update(0, castagnoli, g[:])
}

// Replay calls fn with the payload of each valid record of the current
// generation, in order, up to the first record that fails its check. The
// payload is valid only during the call. An error of fn ends the replay.
func (j *Journal) Replay(fn func(payload []byte) error) error {
	_, _, err := j.replay(fn)
	return err
}

func (j *Journal) replay(fn func(payload []byte) error) (n int, end int64, err error) {
	data := j.m
	if data == nil {
		data = make([]byte, j.size)
		if _, err := j.f.ReadAt(data, 0); err != nil {
			return 0, 0, fmt.Errorf("journal: read %s: %w", j.path, err)
		}
	}
	n, end, err = decode(data, fn)
	if end == 0 {
		end = j.start
	}
	return n, end, err
}

// Decode calls fn with each valid record of the journal image data (a
// header and records), in order, up to the first record that fails its
// check, and returns how many it passed. An image without a valid header
// holds no records.
func Decode(data []byte, fn func(payload []byte) error) (int, error) {
	n, _, err := decode(data, fn)
	return n, err
}

// decode is Decode, also returning where the valid records end (0 without
// a valid header).
func decode(data []byte, fn func(payload []byte) error) (n int, end int64, err error) {
	gen, start, ok := parseHeader(data, int64(len(data)))
	if !ok {
		return 0, 0, nil
	}
	var g [8]byte
	binary.LittleEndian.PutUint64(g[:], gen)
	seed := crc32.Update(0, castagnoli, g[:])
	off := int(start)
	for len(data)-off >= recordHead {
		length := binary.LittleEndian.Uint32(data[off:])
		if length == 0 || length > MaxPayload || uint64(len(data)-off-recordHead) < uint64(length) {
			break
		}
		sum := crc32.Update(seed, castagnoli, data[off:off+4])
		payload := data[off+recordHead : off+recordHead+int(length)]
		if crc32.Update(sum, castagnoli, payload) != binary.LittleEndian.Uint32(data[off+4:]) {
			break
		}
		if err := fn(payload); err != nil {
			return n, int64(off), err
		}
		n++
		off += recordHead + int(length)
	}
	return n, int64(off), nil
}

// Append writes one record. It is in the kernel's page cache when Append
// returns (a crash of the process keeps it), not on the disk.
func (j *Journal) Append(payload []byte) error {
	if len(payload) == 0 || len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
	}
	need := j.off + recordHead + int64(len(payload))
	if need > j.size {
		if err := j.grow(need); err != nil {
			return err
		}
	}
	j.head = recordHeadFor(j.crc, payload)
	if j.m != nil {
		// The payload first, the head that makes it valid last: a
		// crash between them leaves a record that fails its check.
		copy(j.m[j.off+recordHead:], payload)
		copy(j.m[j.off:], j.head[:])
	} else {
		buf := make([]byte, 0, recordHead+len(payload))
		buf = append(append(buf, j.head[:]...), payload...)
		if _, err := j.f.WriteAt(buf, j.off); err != nil {
			return fmt.Errorf("journal: write %s: %w", j.path, err)
		}
	}
	j.off = need
	return nil
}

// recordHeadFor returns the length and CRC that precede payload in the
// generation whose CRC seed is seed.
func recordHeadFor(seed uint32, payload []byte) [recordHead]byte {
	var h [recordHead]byte
	binary.LittleEndian.PutUint32(h[:4], uint32(len(payload)))
	sum := crc32.Update(seed, castagnoli, h[:4])
	binary.LittleEndian.PutUint32(h[4:], crc32.Update(sum, castagnoli, payload))
	return h
}

// grow doubles the file until need bytes fit, and maps it again.
func (j *Journal) grow(need int64) error {
	size := j.size
	for size < need {
		size *= 2
	}
	if err := j.allocate(j.size, size); err != nil {
		return err
	}
	if j.m != nil {
		_ = unix.Munmap(j.m)
		j.m = nil
		if m, err := unix.Mmap(int(j.f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
			j.m = m
		}
	}
	j.size = size
	return nil
}

// Reset empties the journal and starts a new generation holding the n
// records that record(i, b) appends to b, for i from 0 to n-1 (nil, 0:
// none). Until the header flips, the current generation stays whole; the
// flip is one pwrite of the header. Nothing is synced.
func (j *Journal) Reset(n int, record func(i int, b []byte) []byte) error {
	gen, err := newGen()
	if err != nil {
		return err
	}
	var g [8]byte
	binary.LittleEndian.PutUint64(g[:], gen)
	seed := crc32.Update(0, castagnoli, g[:])
	img := j.img[:0]
	for i := range n {
		at := len(img)
		img = append(img, make([]byte, recordHead)...)
		img = record(i, img)
		payload := img[at+recordHead:]
		if len(payload) == 0 || len(payload) > MaxPayload {
			return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
		}
		h := recordHeadFor(seed, payload)
		copy(img[at:], h[:])
	}
	if cap(img) <= 1<<20 {
		j.img = img[:0]
	} else {
		j.img = nil // do not keep a burst's buffer
	}
	// The new records must not overwrite the current generation's.
	start := int64(HeaderSize)
	if start+int64(len(img)) > j.start {
		start = j.off
	}
	end := start + int64(len(img))
	if end > j.size {
		if err := j.grow(end); err != nil {
			return err
		}
	}
	if len(img) > 0 {
		if j.m != nil {
			copy(j.m[start:], img)
		} else if _, err := j.f.WriteAt(img, start); err != nil {
			return fmt.Errorf("journal: reset %s: %w", j.path, err)
		}
	}
	h := header(gen, start)
	if _, err := j.f.WriteAt(h[:], 0); err != nil {
		return fmt.Errorf("journal: reset %s: %w", j.path, err)
	}
	j.setGen(gen)
	j.start, j.off = start, end
	return nil
}

// Len returns the bytes of records written since the last Reset.
func (j *Journal) Len() int64 { return j.off - j.start }

// Close unmaps and closes the file (without syncing it).
func (j *Journal) Close() error {
	if j.m != nil {
		_ = unix.Munmap(j.m)
		j.m = nil
	}
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("journal: close %s: %w", j.path, err)
	}
	return nil
}
