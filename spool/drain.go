package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

// Next returns the oldest committed readings not handed out yet in this
// process: at most maxReadings, and at most maxBytes of wire encoding
// (NDJSON lines; a single reading larger than that still comes alone), as
// a batch of one stream with the stream's dropped ranges not yet reported.
// It reads only the batch, never the backlog. Streams drain oldest first.
// It returns nil when there is nothing to send. The uplink sends the batch
// and gives it (or the parts it split it into) back to Ack or DeadLetter.
//
// Readings handed out are not handed out again in this process lifetime,
// until a restart (then unacknowledged readings come again) or a Resend.
func (s *Spool) Next(maxReadings, maxBytes int) (*reading.Batch, error) {
	if maxReadings <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("spool: next: limits must be positive, got %d readings, %d bytes", maxReadings, maxBytes)
	}
	// Lock order: dbMu (inside view), drainMu, mu.
	var batch *reading.Batch
	err := s.view(func(tx *bolt.Tx) error {
		s.drainMu.Lock()
		defer s.drainMu.Unlock()
		s.mu.Lock()
		streams := append([]record.Stream(nil), s.streams...)
		s.mu.Unlock()
		s.tab.RLock()
		defer s.tab.RUnlock()
		for _, si := range streams {
			b, err := s.nextIn(tx, si.ID, maxReadings, maxBytes)
			if err != nil || b != nil {
				batch = b
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: next: %w", err)
	}
	return batch, nil
}

// nextIn builds a batch from one stream; s.drainMu and s.tab.RLock are held.
func (s *Spool) nextIn(tx *bolt.Tx, stream reading.StreamID, maxReadings, maxBytes int) (*reading.Batch, error) {
	batch := &reading.Batch{Stream: stream}
	size := 0
	var line []byte
	meta := tx.Bucket(record.BucketMeta)
	pc := meta.Cursor()
	prefix := record.PendingKey(stream, 0)[:9]
	for k, v := pc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == 17; k, v = pc.Next() {
		rk := rangeKey{stream, record.Btoi(k[9:])}
		if to, ok := s.handed[rk]; ok && to == record.Btoi(v) {
			continue
		}
		d := reading.Dropped{Device: s.opts.Device, Stream: stream, From: rk.from, To: record.Btoi(v)}
		line = reading.AppendDropped(line[:0], &d)
		size += len(line) + 1
		batch.Dropped = append(batch.Dropped, d)
	}
	// Resent dead letters come first, then the readings past the cursor.
	from, to, resent := max(s.cursor[stream], 1), uint64(reading.MaxSeq), false
	if rs := s.resent[stream]; len(rs) > 0 {
		from, to, resent = rs[0].from, rs[0].to, true
	} else if f, ok := s.fresh[stream]; ok {
		// NextFresh handed out f from the top: stop below it, and once
		// the cursor reaches it, go on above it.
		if from >= f.from {
			from = max(from, f.to+1)
			s.cursor[stream] = from
			delete(s.fresh, stream)
		} else {
			to = f.from - 1
		}
	}
	skippedAll := false // every value collect met was unreadable
	if b := tx.Bucket(record.StreamBucket(stream)); b != nil {
		scanned, err := s.collect(b, batch, from, to, size, maxReadings, maxBytes)
		if err != nil {
			return nil, err
		}
		if !resent && scanned >= from {
			s.cursor[stream] = scanned + 1 // past dead-lettered unreadable values too
			skippedAll = len(batch.Readings) == 0
		}
	}
	n := len(batch.Readings)
	if skippedAll && len(batch.Dropped) == 0 {
		// A run of unreadable values filled the batch: the cursor has
		// moved past it, so look again rather than say "nothing".
		return s.nextIn(tx, stream, maxReadings, maxBytes)
	}
	if resent {
		rs := s.resent[stream]
		if n > 0 && batch.Readings[n-1].Seq < rs[0].to {
			rs[0].from = batch.Readings[n-1].Seq + 1
		} else if rs = rs[1:]; len(rs) == 0 {
			delete(s.resent, stream)
		} else {
			s.resent[stream] = rs
		}
		if n == 0 && len(batch.Dropped) == 0 {
			return s.nextIn(tx, stream, maxReadings, maxBytes)
		}
	}
	if n == 0 && len(batch.Dropped) == 0 {
		return nil, nil
	}
	if n > 0 {
		batch.From, batch.To = batch.Readings[0].Seq, batch.Readings[n-1].Seq
		if !resent {
			s.cursor[stream] = max(s.cursor[stream], batch.To+1)
		}
	}
	for _, d := range batch.Dropped {
		s.handed[rangeKey{stream, d.From}] = d.To
	}
	return batch, nil
}

// collect adds to batch the readings of stream bucket b with seqs from
// from to to, as long as the batch stays within maxReadings and maxBytes of
// wire encoding (size is what it holds already; a first reading larger
// than maxBytes still comes alone). A value that does not decode is
// queued for the dead-letter bucket and skipped, counting against
// maxReadings. It returns the last seq it took or skipped (0 if none).
// s.drainMu and s.tab.RLock are held.
//
// Encoding each reading to learn its size cost a fifth of a drain's CPU,
// so while the batch is far from maxBytes it counts each reading at an
// upper bound of its line (lineBound) instead; only once the bounds could
// pass maxBytes does it encode, and count exactly from then on. The batch
// is the same as if every line had been encoded.
func (s *Spool) collect(b *bolt.Bucket, batch *reading.Batch, from, to uint64, size, maxReadings, maxBytes int) (scanned uint64, err error) {
	var line []byte
	if batch.Readings == nil {
		// Growing the slice reading by reading would copy each batch
		// about twice (and trip the GC's write barriers on the copies).
		// A line takes 100 bytes or more.
		batch.Readings = make([]reading.Reading, 0, max(1, min(maxReadings, maxBytes/100, int(min(to-from, 1<<20))+1)))
	}
	exact, bound := false, size // bound: size plus the bounds of the readings taken
	c := b.Cursor()
	skipped := 0
	for k, v := c.Seek(record.Itob(from)); k != nil && len(batch.Readings)+skipped < maxReadings; k, v = c.Next() {
		if len(k) != 8 {
			return scanned, fmt.Errorf("stream %v: key %x: %w", batch.Stream, k, ErrCorrupt)
		}
		if record.Btoi(k) > to {
			break
		}
		if record.Btoi(k) <= scanned || record.Btoi(k) < from {
			// Keys come in order unless the tree is damaged (a page
			// cycle brings old keys back, forever).
			return scanned, fmt.Errorf("stream %v: key %d after %d: B+tree out of order: %w", batch.Stream, record.Btoi(k), max(scanned, from), ErrCorrupt)
		}
		r, id, err := s.decodeSeries(batch.Stream, record.Btoi(k), v)
		if ue := (*unreadableError)(nil); errors.As(err, &ue) {
			s.deadLetterUnreadable(ue)
			skipped++
			scanned = record.Btoi(k)
			continue
		}
		if err != nil {
			return scanned, err
		}
		if !exact {
			if ub := s.lineBound(id) + 1; bound+ub <= maxBytes {
				bound += ub
				batch.Readings = append(batch.Readings, r)
				scanned = r.Seq
				continue
			}
			exact = true // near maxBytes: count what the batch holds exactly
			for i := range batch.Readings {
				line = reading.AppendReading(line[:0], &batch.Readings[i])
				size += len(line) + 1
			}
		}
		line = reading.AppendReading(line[:0], &r)
		if len(batch.Readings) > 0 && size+len(line)+1 > maxBytes {
			break
		}
		size += len(line) + 1
		batch.Readings = append(batch.Readings, r)
		scanned = r.Seq
	}
	return scanned, nil
}

// lineBound returns an upper bound of the length of a reading line of
// series id as reading.AppendReading encodes it. The device, sensor, unit
// and labels are the same in every line of a series, and the stream id
// always takes 16 hex digits: their length comes from encoding a template
// line once per series, to which it adds the longest seq, value and
// timestamp. s.drainMu and s.tab.RLock are held; id is known.
func (s *Spool) lineBound(id uint32) int {
	if s.boundsTab != s.tab { // a new file: ids name other series
		s.boundsTab, s.bounds = s.tab, s.bounds[:0]
	}
	if int(id) < len(s.bounds) && s.bounds[id] > 0 {
		return s.bounds[id]
	}
	ser, _ := s.tab.Lookup(id)
	tmpl := reading.Reading{Device: s.opts.Device, Sensor: ser.Sensor, Unit: ser.Unit, Labels: ser.Labels, Unsynced: true}
	// The template's seq, value and timestamp ("0", "0" and year 1) are
	// counted on top: slack, not a loss.
	n := len(reading.AppendReading(nil, &tmpl)) + maxSeqLen + maxValueLen + maxTimeLen
	if int(id) >= len(s.bounds) {
		s.bounds = append(s.bounds, make([]int, int(id)+1-len(s.bounds))...)
	}
	s.bounds[id] = n
	return n
}

// The longest encodings of a line's variable parts: a seq up to MaxSeq
// (19 digits), a finite float64 (shortest round-trip form, at most 25
// bytes in plain or exponent notation, sign included), and an RFC 3339
// timestamp with nanoseconds of any year a stored time can hold (34
// bytes). Each is rounded up.
const (
	maxSeqLen   = 20
	maxValueLen = 32
	maxTimeLen  = 40
)

// decode turns a stored value into a reading; s.tab.RLock is held. A reading
// taken before the clock was synchronised comes out with its corrected
// time once its boot's offset is known (SetBootOffset): the correction is
// applied here, as readings are read for sending or export, never by
// rewriting the backlog.
func (s *Spool) decode(stream reading.StreamID, seq uint64, v []byte) (reading.Reading, error) {
	r, _, err := s.decodeSeries(stream, seq, v)
	return r, err
}

// decodeSeries is decode that also returns the reading's series id.
func (s *Spool) decodeSeries(stream reading.StreamID, seq uint64, v []byte) (reading.Reading, uint32, error) {
	d, err := record.DecodeStored(v)
	if err != nil {
		// The reason names the decode error, not the file: the file is fine.
		return reading.Reading{}, 0, &unreadableError{stream, seq, strings.TrimSuffix(err.Error(), ": "+ErrCorrupt.Error())}
	}
	record.Correct(&d, s.tab.Boots())
	ser, ok := s.tab.Lookup(d.Series)
	if !ok {
		return reading.Reading{}, 0, &unreadableError{stream, seq, fmt.Sprintf("unknown series %d", d.Series)}
	}
	return reading.Reading{
		Device:   s.opts.Device,
		Stream:   stream,
		Seq:      seq,
		Sensor:   ser.Sensor,
		Value:    d.Value,
		Unit:     ser.Unit,
		Labels:   maps.Clone(ser.Labels),
		Time:     d.Time,
		Unsynced: d.Unsynced,
	}, d.Series, nil
}

// ackOp deletes an acknowledged batch in the next commit.
type ackOp struct {
	stream  reading.StreamID
	runs    []seqRange
	dropped []reading.Dropped
}

// ackRuns returns the seq runs of b.Stream an ack of b deletes: the seqs
// of its readings when it has any (so a part of a batch deletes only what
// it holds), else From–To.
func ackRuns(b *reading.Batch) []seqRange {
	if len(b.Readings) == 0 {
		if b.From > 0 && b.To >= b.From {
			return []seqRange{{b.From, b.To}}
		}
		return nil
	}
	var runs []seqRange
	for _, r := range b.Readings {
		if n := len(runs); n > 0 && runs[n-1].to+1 == r.Seq {
			runs[n-1].to = r.Seq
			continue
		}
		runs = append(runs, seqRange{r.Seq, r.Seq})
	}
	return runs
}

// Ack records that the receiver has stored b: its readings are deleted, and
// its dropped ranges marked reported, in the next commit, which also
// carries appends (to spare the card). If the process dies before that
// commit, b is sent again after the restart and the receiver discards it
// as a duplicate. Batches may be acknowledged in any order, and a batch the
// uplink split (reading.Batch.Halves, SplitOut) can be acknowledged part by
// part: the seqs of b.Readings in b.Stream are deleted, or From–To when b
// holds no readings.
func (s *Spool) Ack(b *reading.Batch) error {
	s.drainMu.Lock()
	for _, d := range b.Dropped {
		if s.handed[rangeKey{d.Stream, d.From}] == d.To {
			delete(s.handed, rangeKey{d.Stream, d.From})
		}
	}
	s.drainMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("spool: ack: %w", ErrClosed)
	}
	runs := ackRuns(b)
	s.acks = append(s.acks, ackOp{stream: b.Stream, runs: runs, dropped: b.Dropped})
	s.journalAck(&s.acks[len(s.acks)-1]) // a crash of the process keeps it
	// A fast drain would otherwise pile a whole interval's deletes into one
	// transaction, whose dirty pages are heap: commit early once a batch
	// of acks is waiting, so memory stays flat however long the backlog.
	n := 0
	for _, r := range runs {
		n += int(r.to - r.from + 1)
	}
	s.ackWaiting += n
	kick := s.ackWaiting >= ackCommitReadings || s.opts.CommitInterval == 0
	s.scheduleAckCommit()
	s.mu.Unlock()
	if kick {
		s.kickWriter() // coalesced: a kick pending already is enough
	}
	s.ackBackpressure()
	return nil
}

// ackBackpressure makes an acknowledging drain wait while more than
// ackWaitReadings acknowledged readings wait for a commit that has not
// started yet. A drain faster than the writer's deletes would otherwise
// grow each commit's transaction with the backlog (its rebalanced leaves
// are heap until the commit ends), and leave more to send again after a
// crash. It does not wait while commits fail or once the spool closes.
func (s *Spool) ackBackpressure() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ackWaiting < ackWaitReadings {
		return
	}
	s.kickWriter() // never blocks
	_ = s.waitUntil(context.Background(), func() bool {
		return s.ackWaiting < ackWaitReadings || s.failing || s.closed
	})
}

// ackCommitReadings is how many acknowledged readings make the writer
// commit before its interval ends. Only a fast backlog drain reaches it,
// where a commit every few thousand deletes costs the card little next to
// the readings it frees. A commit's deletes hold their leaves on the heap
// (about 100 bytes a reading) until it ends: with 10000 (up to 20000 per
// commit), a 1M drain peaked 17-40% above a 100k one; with 2500, 6-7%.
const ackCommitReadings = 2500

// ackWaitReadings is how many acknowledged readings may wait for a commit
// before Ack waits for the writer (ackBackpressure): it bounds one
// commit's deletes, and so its memory, whatever the backlog.
const ackWaitReadings = 2 * ackCommitReadings

func applyAck(tx *bolt.Tx, meta *bolt.Bucket, c *record.Counters, a ackOp) error {
	if b := tx.Bucket(record.StreamBucket(a.stream)); b != nil {
		for _, r := range a.runs {
			n, size, err := record.DeleteRange(b, r.from, r.to)
			if err != nil {
				return err
			}
			c.Readings -= min(n, c.Readings)
			c.Bytes -= min(size, c.Bytes)
		}
	}
	for _, d := range a.dropped {
		if err := record.RemovePending(meta, d.Stream, d.From, d.To); err != nil {
			return err
		}
	}
	return nil
}

// resend makes Next hand out the seqs from–to of a stream again (before
// the readings past its cursor), when the cursor has passed them.
func (s *Spool) resend(stream reading.StreamID, from, to uint64) {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	f, fresh := s.fresh[stream]
	switch {
	case fresh && to >= f.from && from <= f.to:
		s.resent[stream] = append(s.resent[stream], seqRange{from, to})
	case s.cursor[stream] > from:
		s.resent[stream] = append(s.resent[stream], seqRange{from, min(to, s.cursor[stream]-1)})
	}
}

// NextFresh returns the newest committed readings of the live stream that
// no one was handed yet, when more than minBacklog readings wait ahead of
// them; otherwise nil. It lets the uplink send what was sampled just now
// while a long backlog drains oldest first through Next, which then skips
// what NextFresh handed out. Limits are as for Next.
func (s *Spool) NextFresh(maxReadings, maxBytes, minBacklog int) (*reading.Batch, error) {
	if maxReadings <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("spool: next fresh: limits must be positive, got %d readings, %d bytes", maxReadings, maxBytes)
	}
	var batch *reading.Batch
	err := s.view(func(tx *bolt.Tx) error {
		s.drainMu.Lock()
		defer s.drainMu.Unlock()
		s.mu.Lock()
		stream := s.stream
		s.mu.Unlock()
		b := tx.Bucket(record.StreamBucket(stream))
		if b == nil || len(s.resent[stream]) > 0 {
			return nil
		}
		k, _ := b.Cursor().Last()
		if len(k) != 8 {
			return nil
		}
		last, cursor := record.Btoi(k), max(s.cursor[stream], 1)
		f, ok := s.fresh[stream]
		if last < cursor+uint64(minBacklog) || (ok && last <= f.to) {
			return nil
		}
		from := f.to + 1
		if !ok {
			from = max(cursor, last-min(last, uint64(maxReadings))+1)
		}
		s.tab.RLock()
		defer s.tab.RUnlock()
		batch = &reading.Batch{Stream: stream}
		if _, err := s.collect(b, batch, from, reading.MaxSeq, 0, maxReadings, maxBytes); err != nil {
			return err
		}
		n := len(batch.Readings)
		if n == 0 {
			batch = nil
			return nil
		}
		batch.From, batch.To = batch.Readings[0].Seq, batch.Readings[n-1].Seq
		if !ok {
			f.from = batch.From
		}
		f.to = batch.To
		s.fresh[stream] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: next fresh: %w", err)
	}
	return batch, nil
}
