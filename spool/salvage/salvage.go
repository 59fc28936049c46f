// Package salvage reads what it can of a damaged spool file, for the
// spool's Salvage, which copies it into the live spool.
//
// Nothing it meets stops it for long. bbolt's cursor loops forever on a
// page cycle, so the page graph is walked first without it; when the walk
// finds damage, what it reaches is copied into a scratch file, which is
// read instead (Reachable). A panic or an error while reading a table, the
// meta bucket or a run of readings becomes a problem, and the reading goes
// on past it: each table on its own, and each stream from the first seq
// that reads again (Chunks). The file is opened read-only and never
// changed. The caller turns memory faults into panics
// (debug.SetPanicOnFault) while it reads: a truncated file faults.
package salvage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// Reachable walks the page graph of file. When it finds damage, it copies
// what the walk reaches into scratch, which is then the file to read
// (rebuilt; the caller removes scratch, also after an error), and returns
// what it skipped.
func Reachable(file, scratch string) (rebuilt bool, damage []string, err error) {
	if err := boltfile.CheckPages(file); err != nil {
		if !errors.Is(err, boltfile.ErrCorrupt) {
			return false, nil, err
		}
		damage, err := boltfile.RebuildReachable(file, scratch)
		return true, damage, err
	}
	return false, nil, nil
}

// File is a spool file opened for salvage, with what it shows of its
// tables: the names and boots tables, the streams its meta bucket
// records (then those only a stream bucket shows) and the pending
// ranges' meta records.
type File struct {
	db       *bolt.DB
	problems *[]string

	Series  []record.Series
	Boots   []record.Boot
	Streams []record.Stream
	Ranges  [][2][]byte // meta key and value of each pending range
}

// Open opens the spool file at path read-only and reads its tables, each
// on its own: a garbled one does not hide the others. Every problem it
// meets, here and in the File's methods, is appended to *problems as it
// is met.
func Open(path string, timeout time.Duration, problems *[]string) (*File, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return nil, err
	}
	return &File{db: db, problems: problems}, nil
}

// ReadTables reads the tables, streams and ranges of f, each on its own.
func (f *File) ReadTables() {
	tab := record.NewTable()
	f.safely("read names and boots", func() error {
		return f.db.View(func(tx *bolt.Tx) error { return tab.Load(tx) })
	})
	f.Series, f.Boots = tab.Series(), tab.Boots()
	f.safely("read meta", func() error {
		return f.db.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(record.BucketMeta)
			if meta == nil {
				return fmt.Errorf("no meta bucket: %w", boltfile.ErrCorrupt)
			}
			c := meta.Cursor()
			for k, v := c.Seek([]byte{record.PrefixStream}); k != nil && k[0] <= record.PrefixPending; k, v = c.Next() {
				if si, ok := record.ParseStream(k, v); ok {
					f.Streams = append(f.Streams, si)
				} else if k[0] == record.PrefixPending && len(k) == 17 && len(v) == 8 {
					f.Ranges = append(f.Ranges, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
				}
			}
			return nil
		})
	})
	f.safely("list buckets", func() error { // streams the meta bucket lost
		return f.db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				id, err := reading.ParseStreamID(string(name))
				if err == nil && !slices.ContainsFunc(f.Streams, func(si record.Stream) bool { return si.ID == id }) {
					f.Streams = append(f.Streams, record.Stream{ID: id})
				}
				return nil
			})
		})
	})
}

// Close closes the file, whatever state bbolt is in.
func (f *File) Close() {
	defer func() { _ = recover() }()
	_ = f.db.Close()
}

// Entry is a salvaged reading: its seq, the reading (sensor, unit, labels,
// value, time and clock flag; an unsynced time corrected with its boot's
// offset, as the old file's boots table knows it), and where on the boot
// clock it was taken (a zero Boot: unknown).
type Entry struct {
	Seq      uint64
	Reading  reading.Reading
	Boot     [16]byte
	BootTime time.Duration
}

// Chunks yields the readable readings of stream si oldest first, up to n
// at a time. A run it cannot read ends a chunk early; it is skipped, from
// the first seq that reads again, and named among the problems. It yields
// ctx's error, and stops, when ctx ends.
func (f *File) Chunks(ctx context.Context, si record.Stream, n int) iter.Seq2[[]Entry, error] {
	return func(yield func([]Entry, error) bool) {
		from, last := uint64(1), f.lastSeq(si)
		for {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			chunk, done, ok := f.chunk(si.ID, &from, n)
			if len(chunk) > 0 && !yield(chunk, nil) {
				return
			}
			switch {
			case ok && done:
				return
			case ok:
			case from > last:
				return
			default:
				next, found := f.nextReadable(si.ID, from, last)
				if !found {
					f.problem(fmt.Sprintf("stream %v: seqs from %d unreadable", si.ID, from))
					return
				}
				f.problem(fmt.Sprintf("stream %v: seqs %d–%d unreadable, skipped", si.ID, from, next-1))
				from = next
			}
		}
	}
}

// lastSeq is the highest seq the stream's record or its bucket shows.
func (f *File) lastSeq(si record.Stream) uint64 {
	last := si.HWM
	f.safely(fmt.Sprintf("stream %v last seq", si.ID), func() error {
		return f.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(record.StreamBucket(si.ID)); b != nil {
				if k, _ := b.Cursor().Last(); len(k) == 8 {
					last = max(last, record.Btoi(k))
				}
			}
			return nil
		})
	})
	return last
}

// chunk reads up to n readings of a stream from seq *from on, moving
// *from past each one. done says the stream ended before n; ok that
// nothing failed.
func (f *File) chunk(id reading.StreamID, from *uint64, n int) (chunk []Entry, done, ok bool) {
	done = true
	ok = f.safely(fmt.Sprintf("stream %v from seq %d", id, *from), func() error {
		return f.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(record.StreamBucket(id))
			if b == nil {
				return nil
			}
			c := b.Cursor()
			for k, v := c.Seek(record.Itob(*from)); k != nil; k, v = c.Next() {
				if len(chunk) == n {
					done = false
					break
				}
				seq := record.Btoi(k)
				e, err := f.entry(seq, v)
				if err != nil {
					return err
				}
				chunk = append(chunk, e)
				*from = seq + 1
			}
			return nil
		})
	})
	return chunk, done, ok
}

// entry decodes the stored value v of seq against the old file's tables.
func (f *File) entry(seq uint64, v []byte) (Entry, error) {
	d, err := record.DecodeStored(v)
	if err != nil {
		return Entry{}, fmt.Errorf("seq %d: %w", seq, err)
	}
	if int(d.Series) >= len(f.Series) || d.HasBoot && int(d.Boot) >= len(f.Boots) {
		return Entry{}, fmt.Errorf("seq %d: unknown series or boot: %w", seq, boltfile.ErrCorrupt)
	}
	// The offset lives in the old file's boots table: apply it now, as
	// the readings are rewritten.
	record.Correct(&d, f.Boots)
	n := f.Series[d.Series]
	e := Entry{Seq: seq, Reading: reading.Reading{Sensor: n.Sensor, Unit: n.Unit, Labels: n.Labels,
		Value: d.Value, Time: d.Time, Unsynced: d.Unsynced}}
	if d.HasBoot {
		e.Boot, e.BootTime = f.Boots[d.Boot].ID, d.BootTime
	}
	return e, nil
}

// errNoStream: a probe found no bucket for the stream.
var errNoStream = errors.New("no stream bucket")

// nextReadable finds the first seq after bad (whose page is unreadable)
// from which the stream reads again: an exponential search forward, then a
// binary search back to the edge of the damage.
func (f *File) nextReadable(id reading.StreamID, bad, last uint64) (uint64, bool) {
	probe := func(seq uint64) bool {
		quiet := &File{db: f.db, problems: new([]string)}
		return quiet.safely("probe", func() error {
			return f.db.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(record.StreamBucket(id))
				if b == nil {
					return errNoStream
				}
				k, v := b.Cursor().Seek(record.Itob(seq))
				if k == nil {
					return nil
				}
				_, err := record.DecodeStored(v)
				return err
			})
		})
	}
	lo, hi := bad, uint64(0)
	for step := uint64(1); bad+step <= last; step *= 2 {
		if probe(bad + step) {
			hi = bad + step
			break
		}
		lo = bad + step
	}
	if hi == 0 {
		return 0, false
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if probe(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, true
}

func (f *File) problem(p string) { *f.problems = append(*f.problems, p) }

// safely runs fn, turning a panic or an error into a problem.
func (f *File) safely(what string, fn func() error) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			f.problem(fmt.Sprintf("%s: panic: %v", what, p))
			ok = false
		}
	}()
	if err := fn(); err != nil {
		f.problem(fmt.Sprintf("%s: %v", what, err))
		return false
	}
	return true
}
