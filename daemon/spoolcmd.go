package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
)

// The operations behind `outpost spool …` and `outpost import`. Each runs
// on an open spool: the daemon's (through the status socket) or, when no
// daemon runs, the file opened directly.

// exportSpool writes committed readings as wire NDJSON, oldest first,
// then (withDropped) the ranges not yet reported: valid input for the
// receiver's POST /v1/readings, so an export carried on a USB stick is
// merged exactly once.
func exportSpool(ctx context.Context, sp *spool.Spool, w io.Writer, limit int, withDropped bool) error {
	bw := bufio.NewWriter(w)
	enc := reading.NewEncoder(bw)
	err := sp.Each(ctx, limit, func(r *reading.Reading) error { return enc.Reading(r) })
	if err != nil {
		return err
	}
	if withDropped {
		ds, err := sp.PendingDropped()
		if err != nil {
			return err
		}
		for i := range ds {
			if err := enc.Dropped(&ds[i]); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// ImportResult says what `outpost import` did.
type ImportResult struct {
	Imported int      `json:"imported"`
	FirstSeq uint64   `json:"first_seq,omitempty"`
	LastSeq  uint64   `json:"last_seq,omitempty"`
	Errors   []string `json:"errors,omitempty"` // one per bad line, naming it
}

// maxImportErrors bounds the errors kept (all bad lines are counted).
const maxImportErrors = 100

// importLine is what an offline instrument writes: sensor, value and
// timestamp, unit and labels optional. Device, stream and seq, if present,
// are ignored: the spool assigns its own.
type importLine struct {
	Sensor    *string           `json:"sensor"`
	Value     *float64          `json:"value"`
	Unit      string            `json:"unit"`
	Labels    map[string]string `json:"labels"`
	Timestamp *string           `json:"timestamp"`
	Clock     string            `json:"clock"`
}

// importReadings appends NDJSON readings to the spool. Good lines are
// imported; each bad one is reported by number and field and skipped.
func importReadings(ctx context.Context, sp *spool.Spool, device string, r io.Reader) (ImportResult, error) {
	var res ImportResult
	bad := 0
	fail := func(n int, format string, args ...any) {
		bad++
		if len(res.Errors) < maxImportErrors {
			res.Errors = append(res.Errors, fmt.Sprintf("line %d: %s", n, fmt.Sprintf(format, args...)))
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), reading.DefaultMaxLineBytes)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l importLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			fail(n, "not a JSON object with sensor, value and timestamp: %v", err)
			continue
		}
		rd := reading.Reading{Device: device, Stream: 1, Seq: 1, Unit: l.Unit, Labels: l.Labels, Unsynced: l.Clock == "unsynced"}
		switch {
		case l.Sensor == nil:
			fail(n, `field "sensor": missing`)
			continue
		case l.Value == nil:
			fail(n, `field "value": missing`)
			continue
		case l.Timestamp == nil:
			fail(n, `field "timestamp": missing`)
			continue
		}
		rd.Sensor, rd.Value = *l.Sensor, *l.Value
		t, err := time.Parse(time.RFC3339Nano, *l.Timestamp)
		if err != nil {
			fail(n, `field "timestamp": %q is not an RFC 3339 time`, *l.Timestamp)
			continue
		}
		rd.Time = t.UTC()
		if err := rd.Validate(); err != nil {
			fail(n, "%v", err)
			continue
		}
		seq, err := sp.Append(ctx, rd, 0) // its boot clock is unknown
		if err != nil {
			return res, fmt.Errorf("line %d: %w", n, err)
		}
		if res.FirstSeq == 0 {
			res.FirstSeq = seq
		}
		res.LastSeq = seq
		res.Imported++
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("reading the input: %w", err)
	}
	if err := sp.Flush(ctx); err != nil {
		return res, err
	}
	if bad > len(res.Errors) {
		res.Errors = append(res.Errors, fmt.Sprintf("… and %d more bad lines", bad-len(res.Errors)))
	}
	return res, nil
}

// DeadLetterInfo is one dead-lettered range, as `outpost spool dead` shows.
type DeadLetterInfo struct {
	Stream string    `json:"stream"`
	From   uint64    `json:"from"`
	To     uint64    `json:"to"`
	Count  int       `json:"count"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

func deadLetters(sp *spool.Spool) ([]DeadLetterInfo, error) {
	dls, err := sp.DeadLetters()
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetterInfo, len(dls))
	for i, d := range dls {
		out[i] = DeadLetterInfo{Stream: d.Stream.String(), From: d.From, To: d.To, Count: d.Count, Reason: d.Reason, Time: d.Time.UTC()}
	}
	return out, nil
}

// spoolStatus is the spool part of the status, from the spool alone.
func spoolStatus(sp *spool.Spool) (SpoolStatus, error) {
	s, err := sp.Stats()
	if err != nil {
		return SpoolStatus{}, err
	}
	st := SpoolStatus{
		Path: s.Path, Stream: s.Stream.String(), Seq: s.Seq, Readings: s.Readings, Bytes: s.Bytes, FileBytes: s.FileSize,
		Dropped: s.Dropped, DeadLetter: s.DeadLettered, Quarantined: s.Quarantined,
		CommitFailing: s.Failing, LastCommitFail: s.LastError, DiskFull: s.OutOfSpace, Rejected: s.Rejected,
	}
	if !s.Oldest.IsZero() {
		st.OldestUnsentS = int64(math.Max(0, time.Since(s.Oldest).Seconds()))
	}
	return st, nil
}
