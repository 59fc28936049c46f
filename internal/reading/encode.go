package reading

import (
	"io"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Encoder writes readings as NDJSON lines, one Write per line, so a caller
// can put a bufio.Writer or a gzip.Writer underneath.
type Encoder struct {
	w   io.Writer
	buf []byte
}

// NewEncoder returns an encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Reading validates r and writes it as one line. An invalid reading is not
// written; the error is a *FieldError.
func (e *Encoder) Reading(r *Reading) error {
	if err := r.Validate(); err != nil {
		return err
	}
	e.buf = AppendReading(e.buf[:0], r)
	_, err := e.w.Write(e.buf)
	return err
}

// Dropped validates d and writes it as one dropped-range line.
func (e *Encoder) Dropped(d *Dropped) error {
	if err := d.Validate(); err != nil {
		return err
	}
	e.buf = AppendDropped(e.buf[:0], d)
	_, err := e.w.Write(e.buf)
	return err
}

// AppendReading appends r as one NDJSON line (with its newline) to dst. It
// does not validate r. Fields come in a fixed order, labels sorted by key,
// so equal readings encode to equal bytes.
func AppendReading(dst []byte, r *Reading) []byte {
	dst = append(dst, `{"device":`...)
	dst = appendString(dst, r.Device)
	dst = append(dst, `,"stream":"`...)
	dst = r.Stream.appendHex(dst)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, `,"sensor":`...)
	dst = appendString(dst, r.Sensor)
	dst = append(dst, `,"value":`...)
	dst = appendFloat(dst, r.Value)
	if r.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst = appendString(dst, r.Unit)
	}
	if len(r.Labels) > 0 {
		dst = append(dst, `,"labels":{`...)
		keys := make([]string, 0, len(r.Labels))
		for k := range r.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, r.Labels[k])
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"timestamp":"`...)
	dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if r.Unsynced {
		dst = append(dst, `,"clock":"unsynced"`...)
	}
	return append(dst, "}\n"...)
}

// AppendDropped appends d as one dropped-range line (with its newline).
func AppendDropped(dst []byte, d *Dropped) []byte {
	dst = append(dst, `{"device":`...)
	dst = appendString(dst, d.Device)
	dst = append(dst, `,"stream":"`...)
	dst = d.Stream.appendHex(dst)
	dst = append(dst, `","dropped":{"from":`...)
	dst = strconv.AppendUint(dst, d.From, 10)
	dst = append(dst, `,"to":`...)
	dst = strconv.AppendUint(dst, d.To, 10)
	return append(dst, "}}\n"...)
}

// appendFloat writes the shortest decimal that parses back to exactly f,
// in plain notation except for very small or large magnitudes (as
// encoding/json does).
func appendFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(dst, f, format, -1, 64)
}

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// validated names never contain it.
func appendString(dst []byte, s string) []byte {
	const hexdigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
