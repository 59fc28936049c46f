// Package store is the contract of the receiver's databases: the Store
// interface, the types it takes and returns, and the logic both stores
// share so that they decide alike: what a reading whose key is already
// stored is (duplicate, conflict or clock correction), how a batch is
// tallied, how gaps are accounted, how migrations are read. The stores
// themselves are receiver/postgres and receiver/sqlite; storetest is the
// conformance suite both pass.
package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
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
// (receiver/postgres, receiver/sqlite) pass the same conformance suite,
// storetest.Run.
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
	// RevokeDevice makes every token of the device invalid, and stops
	// its MQTT ingest.
	RevokeDevice(ctx context.Context, id string, at time.Time) error
	// RotateToken gives the device the token hashing to tokenHash. The
	// token it had keeps working until at+grace (grace 0: not at all);
	// a revoked device is reinstated, and none of its old tokens works
	// again. ErrUnknownDevice when no device has this id.
	RotateToken(ctx context.Context, id string, tokenHash []byte, grace time.Duration, at time.Time) error
	// CheckDevice reports whether a device may send readings: nil for a
	// registered, unrevoked device, else ErrUnknownDevice or ErrRevoked.
	CheckDevice(ctx context.Context, id string) error
	// DevicesGeneration returns a counter that every add, revoke and
	// rotation of any device increases in the same transaction, so that
	// a cache of CheckDevice's answers learns that one may be stale.
	DevicesGeneration(ctx context.Context) (int64, error)
	// DeleteReceivedBefore deletes at most limit readings received
	// before t (in one short transaction) and returns how many it
	// deleted: retention calls it until it deletes fewer than limit.
	DeleteReceivedBefore(ctx context.Context, t time.Time, limit int) (int64, error)
	Devices(ctx context.Context) ([]Device, error)
	// Latest returns the newest reading (by device time) of each sensor.
	Latest(ctx context.Context, device string) ([]Stored, error)
	// Gaps returns per stream the highest seq, the missing seq ranges,
	// the ranges the device reported dropped or keeps dead-lettered, and
	// the newest conflicts.
	Gaps(ctx context.Context, device string) ([]StreamGaps, error)
	// Readings calls fn for each reading of q in device time order.
	Readings(ctx context.Context, q Query, fn func(*Stored) error) error
	// Reject keeps a message that can never be stored, with the reason.
	Reject(ctx context.Context, m Rejected) error
	Close()
}

// Unavailable says which operation failed and marks a database failure
// as ErrUnavailable, which the caller answers with 503 for the device to
// retry; a cancelled or expired context is not the database's failure. A
// nil err stays nil.
func Unavailable(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
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
	// Conflicts, newest first (at most MaxConflictsShown per device).
	Conflicts []Conflict `json:"conflicts"`
}

// A conflict is a reading that arrived under a (device, stream, seq)
// already stored with other contents (sensor, unit, value or device time):
// the stored reading stays, the conflict is counted per stream and in the
// metrics, kept as a row naming both versions, shown by the gaps API, and
// logged once per device and stream. Such a seq reused with new contents
// is what a device that lost its spool's seq state would send.

// MaxConflictsShown bounds the conflicts the gaps API lists per device
// (the newest); the per-stream counts cover them all.
const MaxConflictsShown = 1000

// A flood of conflicts (a device reusing seqs, or a hostile one) must not
// cost a row each: a batch keeps the rows of its first
// MaxConflictsPerBatch conflicts, and a device its newest
// MaxConflictsKept; the per-stream counts still count every one.
const (
	MaxConflictsPerBatch = 100
	MaxConflictsKept     = MaxConflictsShown
)

// Conflict is one conflicting reading and the stored one it lost to.
type Conflict struct {
	Seq uint64 `json:"seq"`
	// Stored is the reading kept (nil for conflicts recorded before the
	// receiver kept both versions); Received, the one set aside.
	Stored     *ConflictVersion `json:"stored"`
	Received   ConflictVersion  `json:"received"`
	ReceivedAt time.Time        `json:"received_at"`
}

// ConflictVersion is what decides a conflict: sensor, value, unit, time.
type ConflictVersion struct {
	Sensor    string    `json:"sensor"`
	Value     float64   `json:"value"`
	Unit      string    `json:"unit,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	Clock     string    `json:"clock,omitempty"` // "unsynced" or empty
}

// ClockOf is the Clock of a ConflictVersion with this clock flag.
func ClockOf(unsynced bool) string {
	if unsynced {
		return "unsynced"
	}
	return ""
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
	// Payload is the start of the message, at most MaxRejectedPayload
	// bytes (KeepPayload); Size and SHA256 are the whole message's.
	Payload    []byte
	Size       int64
	SHA256     []byte
	ReceivedAt time.Time
}

// MaxRejectedPayload is how much of a rejected message is kept: enough to
// see what it was, not a copy of whatever junk a client sends.
const MaxRejectedPayload = 1 << 10

// KeepPayload sets m's Payload to the first MaxRejectedPayload bytes of
// payload (a copy), and Size and SHA256 to payload's.
func (m *Rejected) KeepPayload(payload []byte) {
	sum := sha256.Sum256(payload)
	m.Payload = bytes.Clone(payload[:min(len(payload), MaxRejectedPayload)])
	m.Size, m.SHA256 = int64(len(payload)), sum[:]
}

// Kept returns m as a store keeps it: with its payload cut to
// MaxRejectedPayload bytes, unless KeepPayload has done so.
func (m Rejected) Kept() Rejected {
	if m.SHA256 == nil || len(m.Payload) > MaxRejectedPayload {
		m.KeepPayload(m.Payload)
	}
	return m
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
