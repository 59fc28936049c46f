package spool

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
	kindMask     = 0x07
	kindRaw      = 7
	flagUnsynced = 1 << 3
	flagBoot     = 1 << 4
	flagNanos    = 1 << 5
	flagReserved = 0xc0
)

// epochMicro is the origin of stored times: 2020-01-01 UTC, so times of
// this decade take 7 bytes.
var epochMicro = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

var pow10 = [...]float64{1, 10, 100, 1e3, 1e4, 1e5, 1e6}

var errBadValue = fmt.Errorf("malformed reading value: %w", ErrCorrupt)

// stored is a reading as kept in a stream bucket, before the names table
// turns its series id back into names.
type stored struct {
	series   uint32
	time     time.Time
	value    float64
	unsynced bool
	hasBoot  bool
	boot     uint32
	bootTime time.Duration
}

func appendStored(dst []byte, s *stored) []byte {
	kind, mant := valueKind(s.value)
	flags := byte(kind)
	if s.unsynced {
		flags |= flagUnsynced
	}
	if s.hasBoot {
		flags |= flagBoot
	}
	nanos := s.time.Nanosecond() % 1000
	if nanos != 0 {
		flags |= flagNanos
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(s.series))
	dst = binary.AppendVarint(dst, s.time.UnixMicro()-epochMicro)
	if nanos != 0 {
		dst = binary.AppendUvarint(dst, uint64(nanos))
	}
	if kind == kindRaw {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.value))
	} else {
		dst = binary.AppendVarint(dst, mant)
	}
	if s.hasBoot {
		dst = binary.AppendUvarint(dst, uint64(s.boot))
		dst = binary.AppendUvarint(dst, uint64(s.bootTime))
	}
	return dst
}

// valueKind finds the fewest decimals that represent v exactly as an
// integer mantissa, so 21.37 stores as 2137 with kind 2; kindRaw when none
// does (or v is -0).
func valueKind(v float64) (kind int, mant int64) {
	if v == 0 && math.Signbit(v) {
		return kindRaw, 0 // an integer mantissa has no -0
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
	return kindRaw, 0
}

func decodeStored(b []byte) (stored, error) {
	var s stored
	if len(b) < 1 || b[0]&flagReserved != 0 {
		return s, errBadValue
	}
	flags := b[0]
	b = b[1:]
	id, b, ok := uvarint(b)
	if !ok || id > math.MaxUint32 {
		return s, errBadValue
	}
	s.series = uint32(id)
	micro, n := binary.Varint(b)
	if n <= 0 {
		return s, errBadValue
	}
	b = b[n:]
	var nanos uint64
	if flags&flagNanos != 0 {
		if nanos, b, ok = uvarint(b); !ok || nanos > 999 {
			return s, errBadValue
		}
	}
	s.time = time.UnixMicro(micro + epochMicro).Add(time.Duration(nanos)).UTC()
	if kind := flags & kindMask; kind == kindRaw {
		if len(b) < 8 {
			return s, errBadValue
		}
		s.value = math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
	} else {
		m, n := binary.Varint(b)
		if n <= 0 {
			return s, errBadValue
		}
		b = b[n:]
		s.value = float64(m) / pow10[kind]
	}
	s.unsynced = flags&flagUnsynced != 0
	if flags&flagBoot != 0 {
		s.hasBoot = true
		var idx, bt uint64
		if idx, b, ok = uvarint(b); !ok || idx > math.MaxUint32 {
			return s, errBadValue
		}
		if bt, b, ok = uvarint(b); !ok || bt > math.MaxInt64 {
			return s, errBadValue
		}
		s.boot, s.bootTime = uint32(idx), time.Duration(bt)
	}
	if len(b) != 0 {
		return s, errBadValue
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

// series is what the names table maps to a small id: a sensor with its
// unit and labels.
type series struct {
	sensor, unit string
	labels       map[string]string
}

// appendSeriesKey encodes the series of r: sensor, unit, the number of
// labels and each key and value sorted by key, every string as uvarint
// length + bytes. The encoding is both the names table value and the
// in-memory lookup key.
func appendSeriesKey(dst []byte, r *reading.Reading) []byte {
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

func decodeSeries(b []byte) (series, error) {
	var s series
	var ok bool
	if s.sensor, b, ok = readString(b); !ok {
		return s, fmt.Errorf("series sensor: %w", errBadValue)
	}
	if s.unit, b, ok = readString(b); !ok {
		return s, fmt.Errorf("series unit: %w", errBadValue)
	}
	n, b, ok := uvarint(b)
	if !ok || n > reading.MaxLabels {
		return s, fmt.Errorf("series labels: %w", errBadValue)
	}
	if n > 0 {
		s.labels = make(map[string]string, n)
		for range n {
			var k, v string
			if k, b, ok = readString(b); !ok {
				return s, fmt.Errorf("series label key: %w", errBadValue)
			}
			if v, b, ok = readString(b); !ok {
				return s, fmt.Errorf("series label value: %w", errBadValue)
			}
			s.labels[k] = v
		}
	}
	if len(b) != 0 {
		return s, fmt.Errorf("series trailing bytes: %w", errBadValue)
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
