// Package reading is Outpost's data model and its wire codec: the Reading a
// sensor produces, the dropped-range line that accounts for readings the edge
// discarded by policy, their validation, and the NDJSON encoding of wire
// contract v1 (one JSON object per line, oldest first).
//
// Every other part of Outpost (drivers, spool, uplinks, receiver) speaks in
// these types; this package imports nothing of Outpost's own.
package reading

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits on the fields of a reading. They keep a single line small and every
// name safe to show in a log, a CSV cell or an MQTT topic.
const (
	MaxDeviceLen   = 64  // bytes of [A-Za-z0-9._-]
	MaxSensorLen   = 128 // bytes of UTF-8 without control characters
	MaxUnitLen     = 32
	MaxLabels      = 32
	MaxLabelKeyLen = 64
	MaxLabelValLen = 256
	// MaxSeq is the largest seq a reading may carry: a signed 64-bit
	// integer, as databases store it.
	MaxSeq = math.MaxInt64
)

// Sentinel errors, for callers that branch on the kind of problem. Errors
// returned by this package wrap one of them inside a *FieldError or a
// *LineError that names where the problem is.
var (
	// ErrMissing: a required field is absent.
	ErrMissing = errors.New("missing")
	// ErrInvalid: a field is present but its value breaks the contract.
	ErrInvalid = errors.New("invalid")
	// ErrSyntax: the line is not a JSON object.
	ErrSyntax = errors.New("invalid JSON")
	// ErrLineTooLong: a line exceeds Limits.MaxLineBytes. Decoding can
	// continue with the next line.
	ErrLineTooLong = errors.New("line too long")
	// ErrTooManyLines: the batch exceeds Limits.MaxLines. Decoding stops.
	ErrTooManyLines = errors.New("too many lines in batch")
)

// StreamID identifies one spool stream of a device: a random 64-bit id
// created with the spool file, written on the wire as 16 lower-case hex
// digits.
type StreamID uint64

// NewStreamID returns a new random stream id. It is never zero.
func NewStreamID() StreamID {
	var b [8]byte
	for {
		rand.Read(b[:]) // never returns an error (crypto/rand, Go 1.24+)
		if id := StreamID(binary.BigEndian.Uint64(b[:])); id != 0 {
			return id
		}
	}
}

// String returns the wire form: 16 lower-case hex digits.
func (s StreamID) String() string {
	return string(s.appendHex(make([]byte, 0, 16)))
}

func (s StreamID) appendHex(b []byte) []byte {
	const hexdigits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexdigits[(s>>uint(shift))&0xf])
	}
	return b
}

// ParseStreamID parses the wire form of a stream id: exactly 16 lower-case
// hex digits (one spelling per id, so the receiver's key cannot alias).
func ParseStreamID(s string) (StreamID, error) {
	return parseStreamID([]byte(s))
}

func parseStreamID(b []byte) (StreamID, error) {
	if len(b) != 16 {
		return 0, fmt.Errorf("%w: want 16 lower-case hex digits, got %d characters", ErrInvalid, len(b))
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, fmt.Errorf("%w: want 16 lower-case hex digits, got %q", ErrInvalid, b)
		}
	}
	return StreamID(v), nil
}

// Reading is one measured value.
type Reading struct {
	Device string   // 1–64 of [A-Za-z0-9._-]
	Stream StreamID // the spool stream the reading belongs to
	Seq    uint64   // 1, 2, 3, … within the stream
	Sensor string   // e.g. "greenhouse.temperature"
	Value  float64  // finite
	Unit   string   // optional, e.g. "C"
	Labels map[string]string
	Time   time.Time // device wall clock, UTC
	// Unsynced is set when Time was taken before the device clock was
	// synchronised ("clock":"unsynced" on the wire).
	Unsynced bool
}

// Dropped reports a seq range [From, To] of a stream that the edge
// discarded by its cap policy (or dead-lettered, or purged), so the receiver
// can tell it from readings lost in transit.
type Dropped struct {
	Device   string
	Stream   StreamID
	From, To uint64
}

// FieldError names the field of a reading that failed validation.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %v", e.Field, e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, err error) *FieldError { return &FieldError{Field: field, Err: err} }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Validate checks r against wire contract v1. The error is a *FieldError.
func (r *Reading) Validate() error {
	if err := ValidateDevice(r.Device); err != nil {
		return fieldErr("device", err)
	}
	if r.Seq < 1 || r.Seq > MaxSeq {
		return fieldErr("seq", invalidf("must be between 1 and %d, got %d", uint64(MaxSeq), r.Seq))
	}
	if err := validateName(r.Sensor, MaxSensorLen, true); err != nil {
		return fieldErr("sensor", err)
	}
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		return fieldErr("value", invalidf("must be a finite number, got %v", r.Value))
	}
	if err := validateName(r.Unit, MaxUnitLen, false); err != nil {
		return fieldErr("unit", err)
	}
	if err := validateLabels(r.Labels); err != nil {
		return fieldErr("labels", err)
	}
	if err := validateTime(r.Time); err != nil {
		return fieldErr("timestamp", err)
	}
	return nil
}

// Validate checks d against wire contract v1. The error is a *FieldError.
func (d *Dropped) Validate() error {
	if err := ValidateDevice(d.Device); err != nil {
		return fieldErr("device", err)
	}
	if d.From < 1 || d.To > MaxSeq || d.From > d.To {
		return fieldErr("dropped", invalidf("want 1 <= from <= to <= %d, got from %d to %d", uint64(MaxSeq), d.From, d.To))
	}
	return nil
}

// ValidateDevice checks a device id: 1–64 characters of [A-Za-z0-9._-]. A
// device id is an MQTT topic level, a client id and an ACL name.
func ValidateDevice(s string) error {
	if s == "" {
		return invalidf("must not be empty")
	}
	if len(s) > MaxDeviceLen {
		return invalidf("longer than %d characters", MaxDeviceLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !deviceByte(c) {
			return invalidf("character %q at offset %d is not one of [A-Za-z0-9._-]", rune(c), i)
		}
	}
	return nil
}

func deviceByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// validateName checks a free-text name: valid UTF-8, no control characters,
// at most max bytes, and non-empty when required.
func validateName(s string, max int, required bool) error {
	if s == "" {
		if required {
			return invalidf("must not be empty")
		}
		return nil
	}
	if len(s) > max {
		return invalidf("longer than %d bytes (%d)", max, len(s))
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return invalidf("not valid UTF-8 at offset %d", i)
			}
		}
		if isControl(r) {
			return invalidf("control character %U at offset %d", r, i)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || 0x7f <= r && r <= 0x9f }

func validateLabels(m map[string]string) error {
	if len(m) > MaxLabels {
		return invalidf("more than %d labels (%d)", MaxLabels, len(m))
	}
	for k, v := range m {
		if err := validateName(k, MaxLabelKeyLen, true); err != nil {
			return fmt.Errorf("key %s: %w", strconv.Quote(k), err)
		}
		if err := validateName(v, MaxLabelValLen, false); err != nil {
			return fmt.Errorf("label %s: %w", strconv.Quote(k), err)
		}
	}
	return nil
}

func validateTime(t time.Time) error {
	if t.IsZero() {
		return invalidf("must be set")
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return invalidf("year %d outside RFC 3339's 0001–9999", y)
	}
	return nil
}
