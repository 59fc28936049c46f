package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

// A dead-letter record, under key stream(8) ‖ from(8) in the dead bucket:
//
//	varint unix ns when dead-lettered ‖ uvarint len ‖ reason ‖ uvarint to ‖
//	uvarint count ‖ count × (uvarint seq−from ‖ uvarint len ‖ reading value)
//
// The reading values are those of the stream bucket, so a resend moves them
// back unchanged (same stream, same seq).

// DeadLetter describes a dead-lettered batch.
type DeadLetter struct {
	Stream   reading.StreamID
	From, To uint64
	Count    int // readings kept
	Reason   string
	Time     time.Time
}

type opKind uint8

const (
	opDeadLetter opKind = iota
	opResend
	opPurge
	opBootOffset // clock.go
)

// op is an operation the writer applies in its next commit: a dead-letter
// one, or recording a boot's clock offset.
type op struct {
	kind     opKind
	stream   reading.StreamID
	from, to uint64
	reason   string
	boot     BootID
	offset   time.Duration
	// committed, if set, runs once the commit holding the op succeeded,
	// before its waiter wakes.
	committed func()
	err       error
	done      chan struct{}
}

func (o *op) finish(err error) {
	o.err = err
	if err == nil && o.committed != nil {
		o.committed()
	}
	close(o.done)
}

// submit queues o for the next commit, which it starts, and waits for it.
func (s *Spool) submit(ctx context.Context, o *op) error {
	o.done = make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.ops = append(s.ops, o)
	s.mu.Unlock()
	s.kickWriter()
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// DeadLetter moves the stored readings of b (the seqs of b.Readings, or
// b.Stream's From–To when it holds none) into the dead-letter bucket, one
// record per run of consecutive seqs, with the reason, and marks b's dropped ranges
// reported. It returns once that is committed. Draining continues with the
// next readings.
func (s *Spool) DeadLetter(ctx context.Context, b *reading.Batch, reason string) error {
	if err := s.Ack(&reading.Batch{Stream: b.Stream, Dropped: b.Dropped}); err != nil {
		return fmt.Errorf("spool: dead-letter: %w", err)
	}
	runs := ackRuns(b)
	if len(runs) == 0 {
		return s.Flush(ctx)
	}
	for _, r := range runs {
		err := s.submit(ctx, &op{kind: opDeadLetter, stream: b.Stream, from: r.from, to: r.to, reason: reason})
		if err != nil {
			return fmt.Errorf("spool: dead-letter %v %d–%d: %w", b.Stream, r.from, r.to, err)
		}
		s.log.Warn("spool: readings dead-lettered", "stream", b.Stream.String(), "from", r.from, "to", r.to, "reason", reason)
	}
	return nil
}

// unreadableError is a stored reading whose value does not decode: the
// damage of one value, not of the file's structure. It does not wrap
// ErrCorrupt, so it never quarantines the file: the drain dead-letters
// the reading and goes on with the others.
type unreadableError struct {
	stream reading.StreamID
	seq    uint64
	cause  string
}

func (e *unreadableError) Error() string {
	return fmt.Sprintf("stream %v seq %d: unreadable value: %s", e.stream, e.seq, e.cause)
}

// deadLetterUnreadable queues the move of an unreadable reading into the
// dead-letter bucket, with the decode error as its reason, for the next
// commit; like every dead letter, its seq is then reported upstream with
// the status. It does not wait: the caller holds a read transaction.
func (s *Spool) deadLetterUnreadable(e *unreadableError) {
	o := &op{kind: opDeadLetter, stream: e.stream, from: e.seq, to: e.seq,
		reason: "unreadable value: " + e.cause, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.ops = append(s.ops, o)
	s.mu.Unlock()
	s.kickWriter()
	s.log.Warn("spool: an unreadable reading goes to the dead letters", "stream", e.stream.String(), "seq", e.seq, "err", e.cause)
}

// Resend moves a dead-lettered batch back into its stream (same seqs), so
// it is sent again.
func (s *Spool) Resend(ctx context.Context, stream reading.StreamID, from uint64) error {
	if err := s.submit(ctx, &op{kind: opResend, stream: stream, from: from}); err != nil {
		return fmt.Errorf("spool: resend %v %d: %w", stream, from, err)
	}
	return nil
}

// Purge deletes a dead-lettered batch; its seq range is reported upstream
// like a dropped one.
func (s *Spool) Purge(ctx context.Context, stream reading.StreamID, from uint64) error {
	if err := s.submit(ctx, &op{kind: opPurge, stream: stream, from: from}); err != nil {
		return fmt.Errorf("spool: purge %v %d: %w", stream, from, err)
	}
	return nil
}

// DeadLetters lists the dead-letter records, oldest stream and seq first.
func (s *Spool) DeadLetters() ([]DeadLetter, error) {
	var out []DeadLetter
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(record.BucketDead)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			d, _, err := decodeDead(k, v)
			if err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool: list dead letters: %w", err)
	}
	return out, nil
}

// DeadLetterBatch returns the readings of one dead-letter record, for
// inspection.
func (s *Spool) DeadLetterBatch(stream reading.StreamID, from uint64) (*reading.Batch, error) {
	var batch *reading.Batch
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(record.BucketDead)
		if b == nil {
			return ErrNotFound
		}
		k := record.DeadKey(stream, from)
		v := b.Get(k)
		if v == nil {
			return ErrNotFound
		}
		d, entries, err := decodeDead(k, v)
		if err != nil {
			return err
		}
		batch = &reading.Batch{Stream: stream, From: d.From, To: d.To}
		s.tab.RLock()
		defer s.tab.RUnlock()
		for _, e := range entries {
			r, err := s.decode(stream, e.Seq, e.Value)
			if err != nil {
				return err
			}
			batch.Readings = append(batch.Readings, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: dead letter %v %d: %w", stream, from, err)
	}
	return batch, nil
}

// decodeDead decodes the dead-letter record k → v (record.DecodeDead).
func decodeDead(k, v []byte) (DeadLetter, []record.DeadEntry, error) {
	d, entries, err := record.DecodeDead(k, v)
	return DeadLetter{Stream: d.Stream, From: d.From, To: d.To, Count: len(entries), Reason: d.Reason, Time: d.Time}, entries, err
}

// applyOp applies an operation inside a commit. Problems of the operation
// itself (nothing to dead-letter, no such record) go to o.err and do not
// fail the commit.
func (s *Spool) applyOp(tx *bolt.Tx, meta *bolt.Bucket, c *record.Counters, o *op, now time.Time) error {
	var err error
	switch o.kind {
	case opBootOffset:
		return s.applyBootOffset(tx, o)
	case opDeadLetter:
		err = record.DeadLetter(tx, c, record.Dead{Stream: o.stream, From: o.from, To: o.to, Reason: o.reason, Time: now})
	case opResend, opPurge:
		var to uint64
		if to, err = record.TakeDead(tx, meta, c, o.stream, o.from, o.kind == opResend); err == nil {
			o.to = to
		}
	}
	if errors.Is(err, ErrNotFound) {
		o.err = err
		return nil
	}
	return err
}
