package spool

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/spool/record"
	"github.com/outpost-iot/outpost/spool/salvage"
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
	scratch := s.opts.Path + salvageScratchSuffix
	rebuilt, damage, err := salvage.Reachable(file, scratch)
	if rebuilt {
		defer os.Remove(scratch)
	}
	rep.Problems = append(rep.Problems, damage...)
	if err != nil {
		return rep, fmt.Errorf("spool: salvage %s: %w", file, err)
	}
	if rebuilt {
		s.log.Warn("spool: salvage: the file's page graph is damaged, salvaging what is reachable",
			"file", file, "damage", damage)
		file = scratch
	}
	src, err := salvage.Open(file, s.opts.LockTimeout, &rep.Problems)
	if err != nil {
		return rep, fmt.Errorf("spool: salvage %s: %w", file, err)
	}
	defer src.Close()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	src.ReadTables()
	if len(src.Series) == 0 {
		return rep, fmt.Errorf("spool: salvage %s: names table unreadable: %v: %w", file, rep.Problems, ErrCorrupt)
	}
	if len(src.Streams) == 0 {
		return rep, fmt.Errorf("spool: salvage %s: no readable stream (%v)", file, rep.Problems)
	}
	for _, si := range src.Streams {
		n, err := s.salvageStream(ctx, src, si, &rep)
		if n > 0 {
			rep.Streams++
		}
		if err != nil {
			return rep, err
		}
	}
	if err := s.salvageRanges(src.Ranges, &rep); err != nil {
		return rep, fmt.Errorf("spool: salvage %s: %w", file, err)
	}
	s.log.Info("spool: salvaged", "file", file, "streams", rep.Streams, "readings", rep.Readings,
		"already_present", rep.Present, "ranges", rep.Ranges, "problems", len(rep.Problems))
	return rep, nil
}

// salvageStream copies one stream in chunks, re-encoding each reading's
// series and boot against this spool's tables.
func (s *Spool) salvageStream(ctx context.Context, src *salvage.File, si record.Stream, rep *SalvageReport) (uint64, error) {
	var copied uint64
	for chunk, err := range src.Chunks(ctx, si, salvageChunk) {
		if err != nil {
			return copied, fmt.Errorf("spool: salvage: %w", err)
		}
		err := s.writeTx(func(tx *bolt.Tx, c *record.Counters) error {
			return s.copySalvaged(tx, c, si, chunk, rep, &copied)
		})
		if err != nil {
			return copied, fmt.Errorf("spool: salvage stream %v: %w", si.ID, err)
		}
	}
	return copied, nil
}

// copySalvaged stores a chunk of salvaged readings of stream si that the
// spool does not hold yet, counting them in c, rep and *copied.
func (s *Spool) copySalvaged(tx *bolt.Tx, c *record.Counters, si record.Stream, chunk []salvage.Entry, rep *SalvageReport, copied *uint64) error {
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
		k := record.Itob(e.Seq)
		if b.Get(k) != nil {
			rep.Present++
			continue
		}
		scratch = record.AppendSeriesKey(scratch[:0], &e.Reading)
		st := record.Stored{Time: e.Reading.Time, Value: e.Reading.Value, Unsynced: e.Reading.Unsynced}
		if st.Series, err = s.tab.SeriesID(tx, scratch); err != nil {
			return err
		}
		if e.Boot != (BootID{}) {
			if st.Boot, err = s.tab.BootIndex(tx, e.Boot); err != nil {
				return err
			}
			st.HasBoot, st.BootTime = true, e.BootTime
		}
		v := record.AppendStored(nil, &st)
		if err := b.Put(k, v); err != nil {
			return fmt.Errorf("failed to store seq %d: %w", e.Seq, err)
		}
		c.Readings++
		c.Bytes += uint64(len(k) + len(v) + record.EntryOverhead)
		rep.Readings++
		*copied++
	}
	return nil
}

// salvageRanges carries the salvaged file's unreported ranges over, those
// the spool does not hold yet.
func (s *Spool) salvageRanges(ranges [][2][]byte, rep *SalvageReport) error {
	return s.writeTx(func(tx *bolt.Tx, c *record.Counters) error {
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
