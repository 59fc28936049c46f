package record

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// A reading's value in a stream bucket (format 1):
//
//	flags      1 byte: bits 0–2 value kind (0–6: a decimal mantissa with
//	           that many decimals, 7: raw float64), bit 3 unsynced clock,
//	           bit 4 boot clock present, bit 5 sub-microsecond nanoseconds
//	           present; bits 6–7 zero
//	series     uvarint id in the names table
//	time       zigzag varint microseconds since 2020-01-01 UTC
//	[nanos]    uvarint 0–999, with flag bit 5
//	value      zigzag varint mantissa, or 8 bytes little-endian float64
//	[boot]     uvarint index in the boots table, uvarint CLOCK_BOOTTIME ns,
//	           with flag bit 4
//
// A typical reading (two decimals, boot clock known) takes about 20 bytes.
const (
	KindMask     = 0x07
	KindRaw      = 7
	FlagUnsynced = 1 << 3
	FlagBoot     = 1 << 4
	FlagNanos    = 1 << 5
	FlagReserved = 0xc0
)

// epochMicro is the origin of stored times: 2020-01-01 UTC, so times of
// this decade take 7 bytes.
var epochMicro = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

var pow10 = [...]float64{1, 10, 100, 1e3, 1e4, 1e5, 1e6}

// Stored is a reading as kept in a stream bucket, before the names table
// turns its series id back into names.
type Stored struct {
	Series   uint32 // id in the names table
	Time     time.Time
	Value    float64
	Unsynced bool
	HasBoot  bool          // Boot and BootTime are known
	Boot     uint32        // index in the boots table
	BootTime time.Duration // CLOCK_BOOTTIME when it was taken
}

// AppendStored appends the encoding of s to dst.
func AppendStored(dst []byte, s *Stored) []byte {
	kind, mant := valueKind(s.Value)
	flags := byte(kind)
	if s.Unsynced {
		flags |= FlagUnsynced
	}
	if s.HasBoot {
		flags |= FlagBoot
	}
	nanos := s.Time.Nanosecond() % 1000
	if nanos != 0 {
		flags |= FlagNanos
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(s.Series))
	dst = binary.AppendVarint(dst, s.Time.UnixMicro()-epochMicro)
	if nanos != 0 {
		dst = binary.AppendUvarint(dst, uint64(nanos))
	}
	if kind == KindRaw {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.Value))
	} else {
		dst = binary.AppendVarint(dst, mant)
	}
	if s.HasBoot {
		dst = binary.AppendUvarint(dst, uint64(s.Boot))
		dst = binary.AppendUvarint(dst, uint64(s.BootTime))
	}
	return dst
}

// valueKind finds the fewest decimals that represent v exactly as an
// integer mantissa, so 21.37 stores as 2137 with kind 2; KindRaw when none
// does (or v is -0).
func valueKind(v float64) (kind int, mant int64) {
	if v == 0 && math.Signbit(v) {
		return KindRaw, 0 // an integer mantissa has no -0
	}
	for d, p := range pow10 {
		m := math.Round(v * p)
		if math.Abs(m) >= 1<<53 {
			break
		}
		if math.Float64bits(m/p) == math.Float64bits(v) {
			return d, int64(m)
		}
	}
	return KindRaw, 0
}

// DecodeStored decodes a stream bucket value; an error wraps ErrBadValue.
func DecodeStored(b []byte) (Stored, error) {
	var s Stored
	if len(b) < 1 || b[0]&FlagReserved != 0 {
		return s, ErrBadValue
	}
	flags := b[0]
	b = b[1:]
	id, b, ok := uvarint(b)
	if !ok || id > math.MaxUint32 {
		return s, ErrBadValue
	}
	s.Series = uint32(id)
	micro, n := binary.Varint(b)
	if n <= 0 {
		return s, ErrBadValue
	}
	b = b[n:]
	var nanos uint64
	if flags&FlagNanos != 0 {
		if nanos, b, ok = uvarint(b); !ok || nanos > 999 {
			return s, ErrBadValue
		}
	}
	s.Time = time.UnixMicro(micro + epochMicro).Add(time.Duration(nanos)).UTC()
	if kind := flags & KindMask; kind == KindRaw {
		if len(b) < 8 {
			return s, ErrBadValue
		}
		s.Value = math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
	} else {
		m, n := binary.Varint(b)
		if n <= 0 {
			return s, ErrBadValue
		}
		b = b[n:]
		s.Value = float64(m) / pow10[kind]
	}
	s.Unsynced = flags&FlagUnsynced != 0
	if flags&FlagBoot != 0 {
		s.HasBoot = true
		var idx, bt uint64
		if idx, b, ok = uvarint(b); !ok || idx > math.MaxUint32 {
			return s, ErrBadValue
		}
		if bt, b, ok = uvarint(b); !ok || bt > math.MaxInt64 {
			return s, ErrBadValue
		}
		s.Boot, s.BootTime = uint32(idx), time.Duration(bt)
	}
	if len(b) != 0 {
		return s, ErrBadValue
	}
	return s, nil
}

func uvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}

// Series is what the names table maps to a small id: a sensor with its
// unit and labels.
type Series struct {
	Sensor, Unit string
	Labels       map[string]string
}

// AppendSeriesKey encodes the series of r: sensor, unit, the number of
// labels and each key and value sorted by key, every string as uvarint
// length + bytes. The encoding is both the names table value and the
// in-memory lookup key.
func AppendSeriesKey(dst []byte, r *reading.Reading) []byte {
	dst = appendString(dst, r.Sensor)
	dst = appendString(dst, r.Unit)
	dst = binary.AppendUvarint(dst, uint64(len(r.Labels)))
	if len(r.Labels) == 0 {
		return dst
	}
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = appendString(dst, k)
		dst = appendString(dst, r.Labels[k])
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeSeries decodes a names table value.
func DecodeSeries(b []byte) (Series, error) {
	var s Series
	var ok bool
	if s.Sensor, b, ok = readString(b); !ok {
		return s, fmt.Errorf("series sensor: %w", ErrBadValue)
	}
	if s.Unit, b, ok = readString(b); !ok {
		return s, fmt.Errorf("series unit: %w", ErrBadValue)
	}
	n, b, ok := uvarint(b)
	if !ok || n > reading.MaxLabels {
		return s, fmt.Errorf("series labels: %w", ErrBadValue)
	}
	if n > 0 {
		s.Labels = make(map[string]string, n)
		for range n {
			var k, v string
			if k, b, ok = readString(b); !ok {
				return s, fmt.Errorf("series label key: %w", ErrBadValue)
			}
			if v, b, ok = readString(b); !ok {
				return s, fmt.Errorf("series label value: %w", ErrBadValue)
			}
			s.Labels[k] = v
		}
	}
	if len(b) != 0 {
		return s, fmt.Errorf("series trailing bytes: %w", ErrBadValue)
	}
	return s, nil
}

func readString(b []byte) (string, []byte, bool) {
	n, b, ok := uvarint(b)
	if !ok || n > uint64(len(b)) {
		return "", b, false
	}
	return string(b[:n]), b[n:], true
}
