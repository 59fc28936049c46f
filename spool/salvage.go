package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/record"
)

// SalvageReport says what Salvage recovered.
type SalvageReport struct {
	Streams  int    // streams with readings recovered
	Readings uint64 // readings copied into the live spool
	Present  uint64 // readings skipped because the spool already held them
	Ranges   int    // unreported dropped ranges carried over
	Problems []string
}

// salvageScratchSuffix names the scratch copy of a damaged file's
// reachable part, beside the spool file.
const salvageScratchSuffix = ".salvage-scratch"

// salvageChunk is how many readings one salvage transaction copies.
const salvageChunk = 10000

// Salvage reads what it can from a quarantined (or any other) spool file
// into this spool: every readable reading keeps its stream and seq, in a
// stream bucket of its own that drains before the live stream's newer
// readings, and the file's unreported dropped ranges are carried over. A
// panic or a corrupt value ends the salvage of that stream, keeping what
// was copied before it. Running it twice copies nothing twice. The file is
// opened read-only and never changed.
//
// Before bbolt reads the file, its page graph is walked without bbolt's
// cursor (which loops forever on a page cycle); when that walk finds a
// page reached twice or damaged, what it reaches without those pages is
// copied into a scratch file beside the spool, and the salvage reads that.
func (s *Spool) Salvage(ctx context.Context, file string) (rep SalvageReport, err error) {
	if err := boltfile.CheckPages(file); err != nil {
		if !errors.Is(err, ErrCorrupt) {
			return rep, fmt.Errorf("spool: salvage %s: %w", file, err)
		}
		scratch := s.opts.Path + salvageScratchSuffix
		problems, err := boltfile.RebuildReachable(file, scratch)
		defer os.Remove(scratch)
		rep.Problems = append(rep.Problems, problems...)
		if err != nil {
			return rep, fmt.Errorf("spool: salvage %s: %w", file, err)
		}
		s.log.Warn("spool: salvage: the file's page graph is damaged, salvaging what is reachable",
			"file", file, "damage", problems)
		file = scratch
	}
	src, err := bolt.Open(file, 0o400, &bolt.Options{ReadOnly: true, Timeout: s.opts.LockTimeout})
	if err != nil {
		return rep, fmt.Errorf("spool: salvage %s: %w", file, err)
	}
	defer closeQuietly(src)
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)

	var (
		names   []record.Series
		boots   []record.Boot
		streams []record.Stream
		ranges  [][2][]byte
	)
	// Each table on its own: a garbled one must not hide the others.
	tab := record.NewTable()
	safely(&rep, "read names and boots", func() error {
		return src.View(func(tx *bolt.Tx) error { return tab.Load(tx) })
	})
	names, boots = tab.Series(), tab.Boots()
	safely(&rep, "read meta", func() error {
		return src.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(record.BucketMeta)
			if meta == nil {
				return fmt.Errorf("no meta bucket: %w", ErrCorrupt)
			}
			c := meta.Cursor()
			for k, v := c.Seek([]byte{record.PrefixStream}); k != nil && k[0] <= record.PrefixPending; k, v = c.Next() {
				if si, ok := record.ParseStream(k, v); ok {
					streams = append(streams, si)
				} else if k[0] == record.PrefixPending && len(k) == 17 && len(v) == 8 {
					ranges = append(ranges, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
				}
			}
			return nil
		})
	})
	safely(&rep, "list buckets", func() error { // streams the meta bucket lost
		return src.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				id, err := reading.ParseStreamID(string(name))
				if err == nil && !slices.ContainsFunc(streams, func(si record.Stream) bool { return si.ID == id }) {
					streams = append(streams, record.Stream{ID: id})
				}
				return nil
			})
		})
	})
	if len(names) == 0 {
		return rep, fmt.Errorf("spool: salvage %s: names table unreadable: %v: %w", file, rep.Problems, ErrCorrupt)
	}
	if len(streams) == 0 {
		return rep, fmt.Errorf("spool: salvage %s: no readable stream (%v)", file, rep.Problems)
	}
	for _, si := range streams {
		n, err := s.salvageStream(ctx, src, si, names, boots, &rep)
		if n > 0 {
			rep.Streams++
		}
		if err != nil {
			return rep, err
		}
	}
	err = s.writeTx(func(tx *bolt.Tx, c *record.Counters) error {
		meta := tx.Bucket(record.BucketMeta)
		for _, r := range ranges {
			if meta.Get(r[0]) == nil {
				if err := meta.Put(r[0], r[1]); err != nil {
					return fmt.Errorf("failed to carry a dropped range: %w", err)
				}
				rep.Ranges++
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("spool: salvage %s: %w", file, err)
	}
	s.log.Info("spool: salvaged", "file", file, "streams", rep.Streams, "readings", rep.Readings,
		"already_present", rep.Present, "ranges", rep.Ranges, "problems", len(rep.Problems))
	return rep, nil
}

// safely runs fn, turning a panic or an error into a problem of the report.
func safely(rep *SalvageReport, what string, fn func() error) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: panic: %v", what, p))
			ok = false
		}
	}()
	if err := fn(); err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %v", what, err))
		return false
	}
	return true
}

// salvageStream copies one stream in chunks, re-encoding each reading's
// series and boot against this spool's tables.
func (s *Spool) salvageStream(ctx context.Context, src *bolt.DB, si record.Stream, names []record.Series, boots []record.Boot, rep *SalvageReport) (uint64, error) {
	var copied uint64
	from, last := uint64(1), si.HWM
	safely(rep, fmt.Sprintf("stream %v last seq", si.ID), func() error {
		return src.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(record.StreamBucket(si.ID)); b != nil {
				if k, _ := b.Cursor().Last(); len(k) == 8 {
					last = max(last, record.Btoi(k))
				}
			}
			return nil
		})
	})
	for {
		if err := ctx.Err(); err != nil {
			return copied, fmt.Errorf("spool: salvage: %w", err)
		}
		type entry struct {
			seq uint64
			r   reading.Reading
			clk Clock
		}
		var chunk []entry
		done := true
		ok := safely(rep, fmt.Sprintf("stream %v from seq %d", si.ID, from), func() error {
			return src.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(record.StreamBucket(si.ID))
				if b == nil {
					return nil
				}
				c := b.Cursor()
				for k, v := c.Seek(record.Itob(from)); k != nil; k, v = c.Next() {
					if len(chunk) == salvageChunk {
						done = false
						break
					}
					seq := record.Btoi(k)
					d, err := record.DecodeStored(v)
					if err != nil {
						return fmt.Errorf("seq %d: %w", seq, err)
					}
					if int(d.Series) >= len(names) || d.HasBoot && int(d.Boot) >= len(boots) {
						return fmt.Errorf("seq %d: unknown series or boot: %w", seq, ErrCorrupt)
					}
					// The offset lives in the old file's boots table:
					// apply it now, as the readings are rewritten.
					record.Correct(&d, boots)
					n := names[d.Series]
					e := entry{seq: seq, r: reading.Reading{Sensor: n.Sensor, Unit: n.Unit, Labels: n.Labels,
						Value: d.Value, Time: d.Time, Unsynced: d.Unsynced}}
					if d.HasBoot {
						e.clk = Clock{Boot: boots[d.Boot].ID, BootTime: d.BootTime}
					}
					chunk = append(chunk, e)
					from = seq + 1
				}
				return nil
			})
		})
		if len(chunk) > 0 {
			err := s.writeTx(func(tx *bolt.Tx, c *record.Counters) error {
				b, err := tx.CreateBucketIfNotExists(record.StreamBucket(si.ID))
				if err != nil {
					return fmt.Errorf("failed to create stream bucket: %w", err)
				}
				meta := tx.Bucket(record.BucketMeta)
				if v := meta.Get(record.StreamKey(si.ID)); v == nil {
					if err := record.PutStream(meta, si); err != nil {
						return err
					}
				}
				var scratch []byte
				for _, e := range chunk {
					k := record.Itob(e.seq)
					if b.Get(k) != nil {
						rep.Present++
						continue
					}
					scratch = record.AppendSeriesKey(scratch[:0], &e.r)
					st := record.Stored{Time: e.r.Time, Value: e.r.Value, Unsynced: e.r.Unsynced}
					if st.Series, err = s.tab.SeriesID(tx, scratch); err != nil {
						return err
					}
					if e.clk.Boot != (BootID{}) {
						if st.Boot, err = s.tab.BootIndex(tx, e.clk.Boot); err != nil {
							return err
						}
						st.HasBoot, st.BootTime = true, e.clk.BootTime
					}
					v := record.AppendStored(nil, &st)
					if err := b.Put(k, v); err != nil {
						return fmt.Errorf("failed to store seq %d: %w", e.seq, err)
					}
					c.Readings++
					c.Bytes += uint64(len(k) + len(v) + record.EntryOverhead)
					rep.Readings++
					copied++
				}
				return nil
			})
			if err != nil {
				return copied, fmt.Errorf("spool: salvage stream %v: %w", si.ID, err)
			}
		}
		switch {
		case ok && done:
			return copied, nil
		case ok:
		case from > last:
			return copied, nil
		default:
			next, found := nextReadable(src, si.ID, from, last)
			if !found {
				rep.Problems = append(rep.Problems, fmt.Sprintf("stream %v: seqs from %d unreadable", si.ID, from))
				return copied, nil
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf("stream %v: seqs %d–%d unreadable, skipped", si.ID, from, next-1))
			from = next
		}
	}
}

// nextReadable finds the first seq after bad (whose page is unreadable)
// from which the stream reads again: an exponential search forward, then a
// binary search back to the edge of the damage.
func nextReadable(src *bolt.DB, id reading.StreamID, bad, last uint64) (uint64, bool) {
	probe := func(seq uint64) bool {
		var scratch SalvageReport
		return safely(&scratch, "probe", func() error {
			return src.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(record.StreamBucket(id))
				if b == nil {
					return ErrNotFound
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

// writeTx runs fn in a write transaction beside the writer (never during
// one of its commits), with the meta counters, and installs the result.
func (s *Spool) writeTx(fn func(tx *bolt.Tx, c *record.Counters) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	nS, nB := s.tab.Mark()
	var c record.Counters
	var streams []record.Stream
	err := s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(record.BucketMeta)
		if meta == nil {
			return fmt.Errorf("meta bucket missing: %w", ErrCorrupt)
		}
		c = record.ReadCounters(meta)
		if err := fn(tx, &c); err != nil {
			return err
		}
		streams, _ = record.ReadStreams(meta) // the well-formed ones
		return record.WriteCounters(meta, c)
	})
	if err != nil {
		s.tab.Rollback(nS, nB)
		return err
	}
	record.SortStreams(streams)
	s.mu.Lock()
	s.counters = c
	s.streams = streams
	s.mu.Unlock()
	s.kickNotify()
	return nil
}

func (s *Spool) kickNotify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}
