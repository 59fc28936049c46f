package receiver

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// Sentinel errors of the stores, for callers that branch on them.
var (
	// ErrUnavailable: the database cannot be reached or failed; the
	// request may be retried later (HTTP 503).
	ErrUnavailable = errors.New("store unavailable")
	// ErrUnknownToken: no device has this token.
	ErrUnknownToken = errors.New("unknown token")
	// ErrRevoked: the device's token was revoked.
	ErrRevoked = errors.New("token revoked")
	// ErrDeviceExists: device add with an id that is already taken.
	ErrDeviceExists = errors.New("device already exists")
	// ErrUnknownDevice: no device has this id.
	ErrUnknownDevice = errors.New("unknown device")
	// ErrNotMigrated: the schema is older than this binary's migrations.
	ErrNotMigrated = errors.New("database schema not migrated")
)

// Store keeps readings, devices and their accounting. Both implementations
// (Postgres, SQLite) pass the same conformance suite.
type Store interface {
	// Migrate applies the embedded migrations that are not applied yet.
	Migrate(ctx context.Context) error
	// Ready reports whether the database answers and is fully migrated.
	Ready(ctx context.Context) error
	// Ingest stores a batch of one device in one transaction: all of it
	// or nothing.
	Ingest(ctx context.Context, device string, b *Batch) (Result, error)
	// Authenticate returns the device whose token hashes to tokenHash.
	Authenticate(ctx context.Context, tokenHash []byte) (string, error)
	// SaveStatus keeps status as the device's last heartbeat.
	SaveStatus(ctx context.Context, device string, status []byte, at time.Time) error
	AddDevice(ctx context.Context, id string, tokenHash []byte, at time.Time) error
	RevokeDevice(ctx context.Context, id string, at time.Time) error
	Devices(ctx context.Context) ([]Device, error)
	// Latest returns the newest reading (by device time) of each sensor.
	Latest(ctx context.Context, device string) ([]Stored, error)
	// Gaps returns per stream the highest seq, the missing seq ranges and
	// the ranges the device reported dropped.
	Gaps(ctx context.Context, device string) ([]StreamGaps, error)
	// Readings calls fn for each reading of q in device time order.
	Readings(ctx context.Context, q Query, fn func(*Stored) error) error
	// Reject keeps a message that can never be stored, with the reason.
	Reject(ctx context.Context, m Rejected) error
	Close()
}

// Batch is what one request or message carries, decoded and checked.
type Batch struct {
	Readings   []reading.Reading
	Dropped    []reading.Dropped
	ReceivedAt time.Time
}

// Result accounts for every reading of a batch: Accepted + Duplicates +
// Conflicts equals the readings sent. Corrected counts the accepted
// readings that updated an unsynced reading with its corrected timestamp.
type Result struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Conflicts  int `json:"conflicts"`
	Corrected  int `json:"corrected"`
	// ConflictStream and ConflictSeq name the batch's first conflicting
	// reading, for the log (when Conflicts > 0).
	ConflictStream reading.StreamID `json:"-"`
	ConflictSeq    uint64           `json:"-"`
}

// Device is a registered device, as listed by the query API.
type Device struct {
	ID           string          `json:"id"`
	Created      time.Time       `json:"created"`
	Revoked      *time.Time      `json:"revoked,omitempty"`
	LastSeen     *time.Time      `json:"last_seen,omitempty"`
	LastStatus   json.RawMessage `json:"last_status,omitempty"`
	LastStatusAt *time.Time      `json:"last_status_at,omitempty"`
	// Clock is the clock state of the last heartbeat, "synced" or
	// "unsynced" ("" before any heartbeat that says).
	Clock   string          `json:"clock,omitempty"`
	Streams []StreamSummary `json:"streams"`
}

// heartbeatClock returns the clock state a heartbeat reports, or "".
func heartbeatClock(status []byte) string {
	var hb struct {
		Clock string `json:"clock"`
	}
	if json.Unmarshal(status, &hb) != nil || (hb.Clock != "synced" && hb.Clock != "unsynced") {
		return ""
	}
	return hb.Clock
}

// StreamSummary is the accounting of one stream of a device.
type StreamSummary struct {
	Stream     string `json:"stream"`
	HighestSeq uint64 `json:"highest_seq"`
	Received   uint64 `json:"received"`
	Dropped    uint64 `json:"dropped"` // seqs reported dropped by the device
	// DeadLettered counts the seqs the device's last heartbeat lists as
	// dead-lettered (rejected, kept on the device, re-sendable).
	DeadLettered uint64 `json:"dead_lettered"`
	// Missing counts seqs up to HighestSeq neither stored nor reported
	// dropped or dead-lettered (lost in transit, or still on their way).
	Missing uint64 `json:"missing"`
	// Conflicts counts readings that arrived under a stored key with
	// other contents (the stored one was kept); Corrected, resends that
	// corrected an unsynced timestamp.
	Conflicts uint64 `json:"conflicts"`
	Corrected uint64 `json:"corrected"`
}

// StreamGaps lists what never arrived of one stream, and why, and the
// readings that arrived in conflict with stored ones.
type StreamGaps struct {
	Stream     string      `json:"stream"`
	HighestSeq uint64      `json:"highest_seq"`
	Missing    [][2]uint64 `json:"missing"`
	Dropped    [][2]uint64 `json:"dropped"`
	// DeadLettered: the ranges the device's last heartbeat lists as
	// dead-lettered on the device (not missing: kept there, re-sendable).
	DeadLettered [][2]uint64 `json:"dead_lettered"`
	// Conflicts, newest first (at most maxConflictsShown per device).
	Conflicts []Conflict `json:"conflicts"`
}

// Stored is a stored reading with the time the receiver got it.
type Stored struct {
	reading.Reading
	ReceivedAt time.Time
}

// Rejected is a message refused for good (malformed, wrong device).
type Rejected struct {
	Topic, Device string
	Err           string
	Line          int // 0 when no line is at fault
	Payload       []byte
	ReceivedAt    time.Time
}

// Query selects readings of one device, optionally one sensor, with device
// time in [From, To); zero times are unbounded.
type Query struct {
	Device   string
	Sensor   string
	From, To time.Time
	Clock    ClockFilter
}

// ClockFilter selects readings by their clock flag.
type ClockFilter uint8

const (
	ClockAll      ClockFilter = iota // every reading
	ClockSynced                      // taken with the device clock synchronised (or corrected since)
	ClockUnsynced                    // flagged "clock":"unsynced": the timestamp may be wrong
)

// ParseClockFilter parses the clock parameter of GET /v1/readings.
func ParseClockFilter(s string) (ClockFilter, error) {
	switch s {
	case "", "all":
		return ClockAll, nil
	case "synced":
		return ClockSynced, nil
	case "unsynced":
		return ClockUnsynced, nil
	}
	return ClockAll, fmt.Errorf("clock %q: want synced, unsynced or all", s)
}

// fate is what became of one reading of a batch.
type fate uint8

const (
	fateNew fate = iota
	fateDuplicate
	fateConflict
	fateCorrected
)

// classify decides what a reading whose key is already stored is: the
// same (duplicate), a clock correction of an unsynced reading, or a
// conflict. It compares sensor, unit, the value's float64 bits and the
// device time at microsecond precision (what PostgreSQL keeps).
func classify(stored, in *reading.Reading) fate {
	if stored.Sensor != in.Sensor || stored.Unit != in.Unit ||
		math.Float64bits(stored.Value) != math.Float64bits(in.Value) {
		return fateConflict
	}
	if micros(stored.Time) == micros(in.Time) {
		return fateDuplicate
	}
	if stored.Unsynced && !in.Unsynced {
		return fateCorrected
	}
	return fateConflict
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

type seqKey struct {
	stream reading.StreamID
	seq    uint64
}

// dedupe splits a batch's readings into the first occurrence of each key
// (to store) and the fates of later occurrences, classified against the
// first. fates has one entry per reading; first occurrences are fateNew.
func dedupe(rs []reading.Reading) (first []int, fates []fate) {
	fates = make([]fate, len(rs))
	first = make([]int, 0, len(rs))
	if increasing(rs) { // no key twice: all first occurrences
		for i := range rs {
			first = append(first, i)
		}
		return first, fates
	}
	seen := make(map[seqKey]int, len(rs))
	for i := range rs {
		k := seqKey{rs[i].Stream, rs[i].Seq}
		if j, ok := seen[k]; ok {
			f := classify(&rs[j], &rs[i])
			if f == fateCorrected { // within one batch the first one stands
				f = fateConflict
			}
			fates[i] = f
			continue
		}
		seen[k] = i
		first = append(first, i)
	}
	return first, fates
}

// increasing reports whether the seqs of each stream rise strictly through
// rs, for at most a few streams: the usual batch, a run of one stream,
// which then holds no key twice and needs no map to tell.
func increasing(rs []reading.Reading) bool {
	var last [4]seqKey
	n := 0
next:
	for i := range rs {
		r := &rs[i]
		for j := range n {
			if last[j].stream == r.Stream {
				if r.Seq <= last[j].seq {
					return false
				}
				last[j].seq = r.Seq
				continue next
			}
		}
		if n == len(last) {
			return false
		}
		last[n] = seqKey{r.Stream, r.Seq}
		n++
	}
	return true
}

// tally counts the fates of rs into a Result.
func tally(rs []reading.Reading, fates []fate) Result {
	var r Result
	for i, f := range fates {
		switch f {
		case fateNew:
			r.Accepted++
		case fateDuplicate:
			r.Duplicates++
		case fateConflict:
			if r.Conflicts == 0 {
				r.ConflictStream, r.ConflictSeq = rs[i].Stream, rs[i].Seq
			}
			r.Conflicts++
		case fateCorrected:
			r.Accepted++
			r.Corrected++
		}
	}
	return r
}

// streamDelta is how a batch changes the accounting of one stream.
type streamDelta struct {
	stream               reading.StreamID
	highestSeq           uint64
	added                int64
	conflicts, corrected int64
}

// streamDeltas sums, per stream, the readings a batch newly stored.
func streamDeltas(rs []reading.Reading, fates []fate) []streamDelta {
	var out []streamDelta
	idx := map[reading.StreamID]int{}
	for i := range rs {
		j, ok := idx[rs[i].Stream]
		if !ok {
			j = len(out)
			idx[rs[i].Stream] = j
			out = append(out, streamDelta{stream: rs[i].Stream})
		}
		d := &out[j]
		if rs[i].Seq > d.highestSeq {
			d.highestSeq = rs[i].Seq
		}
		switch fates[i] {
		case fateNew:
			d.added++
		case fateConflict:
			d.conflicts++
		case fateCorrected:
			d.corrected++
		}
	}
	return out
}

// migration is one embedded SQL file, NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

//go:embed migrations
var migrationFS embed.FS

func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("embedded migration %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("embedded migrations: want version %d, found %s", i+1, m.name)
		}
	}
	return ms, nil
}

// missingRanges returns the seq ranges in [1, highest] that are in neither
// have (sorted, disjoint ranges of stored seqs) nor dropped.
func missingRanges(highest uint64, have, dropped [][2]uint64) [][2]uint64 {
	covered := append(slices.Clone(have), dropped...)
	slices.SortFunc(covered, func(a, b [2]uint64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	out := [][2]uint64{}
	next := uint64(1)
	for _, c := range covered {
		if c[0] > next {
			out = append(out, [2]uint64{next, min(c[0]-1, highest)})
		}
		if c[1]+1 > next {
			next = c[1] + 1
		}
		if next > highest {
			break
		}
	}
	if next <= highest {
		out = append(out, [2]uint64{next, highest})
	}
	// Drop ranges clipped away entirely by highest.
	return slices.DeleteFunc(out, func(r [2]uint64) bool { return r[0] > r[1] || r[0] > highest })
}

// countRanges returns how many seqs the ranges hold, counting overlaps once.
func countRanges(rs [][2]uint64) uint64 {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b [2]uint64) int {
		if a[0] < b[0] {
			return -1
		} else if a[0] > b[0] {
			return 1
		}
		return 0
	})
	var n, next uint64
	for _, r := range rs {
		lo := max(r[0], next)
		if r[1] >= lo {
			n += r[1] - lo + 1
			next = r[1] + 1
		}
	}
	return n
}

// islandsSQL finds the runs of consecutive stored seqs of a device (the
// "gaps and islands" query: seq - row_number() is constant along a run).
// param is the dialect's first placeholder.
func islandsSQL(param string) string {
	return `SELECT stream, min(seq), max(seq) FROM (
		SELECT stream, seq, seq - row_number() OVER (PARTITION BY stream ORDER BY seq) AS grp
		FROM readings WHERE device_id = ` + param + `) AS runs
		GROUP BY stream, grp ORDER BY stream, min(seq)`
}

// island is a run of consecutive stored seqs.
type island struct {
	stream   reading.StreamID
	from, to uint64
}

// buildGaps turns the runs of stored seqs (ordered by stream, then seq),
// the reported dropped and dead-lettered ranges and the conflicts into
// per-stream gaps.
func buildGaps(is []island, dropped, dead map[reading.StreamID][][2]uint64, conflicts map[reading.StreamID][]Conflict) []StreamGaps {
	have := map[reading.StreamID][][2]uint64{}
	var order []reading.StreamID
	for _, i := range is {
		if _, ok := have[i.stream]; !ok {
			order = append(order, i.stream)
		}
		have[i.stream] = append(have[i.stream], [2]uint64{i.from, i.to})
	}
	for _, m := range []map[reading.StreamID][][2]uint64{dropped, dead} {
		for st := range m {
			if _, ok := have[st]; !ok {
				order = append(order, st)
				have[st] = nil
			}
		}
	}
	for st := range conflicts {
		if _, ok := have[st]; !ok {
			order = append(order, st)
			have[st] = nil
		}
	}
	slices.Sort(order)
	out := []StreamGaps{}
	for _, st := range order {
		h := have[st]
		var highest uint64
		if len(h) > 0 {
			highest = h[len(h)-1][1]
		}
		d := dropped[st]
		if d == nil {
			d = [][2]uint64{}
		}
		dl := dead[st]
		if dl == nil {
			dl = [][2]uint64{}
		}
		c := conflicts[st]
		if c == nil {
			c = []Conflict{}
		}
		out = append(out, StreamGaps{Stream: st.String(), HighestSeq: highest,
			Missing: missingRanges(highest, h, append(slices.Clone(d), dl...)), Dropped: d, DeadLettered: dl, Conflicts: c})
	}
	return out
}
