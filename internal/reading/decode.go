package reading

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits bound what a Decoder holds in memory and how much it reads.
type Limits struct {
	// MaxLineBytes is the longest line accepted, newline excluded
	// (default 16 KiB). The decoder's buffer is this large, and no larger.
	MaxLineBytes int
	// MaxLines is the most lines one batch may have, blank ones included
	// (default 100 000).
	MaxLines int
}

// Default limits.
const (
	DefaultMaxLineBytes = 16 << 10
	DefaultMaxLines     = 100_000
)

func (l Limits) withDefaults() Limits {
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = DefaultMaxLineBytes
	}
	if l.MaxLines <= 0 {
		l.MaxLines = DefaultMaxLines
	}
	return l
}

// Kind says what a decoded Line holds.
type Kind uint8

const (
	KindReading Kind = iota + 1 // Line.Reading is set
	KindDropped                 // Line.Dropped is set
)

// Line is one decoded line of a batch.
type Line struct {
	Kind    Kind
	Reading Reading
	Dropped Dropped
}

// LineError reports a bad line: its 1-based number in the batch, the field
// at fault when there is one, and why. It wraps one of the package's
// sentinel errors.
type LineError struct {
	Line  int
	Field string // "" when the line as a whole is at fault
	Err   error
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: field %q: %v", e.Line, e.Field, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Decoder reads a batch of NDJSON lines from a stream. It holds one line
// in memory at a time, so a batch of any size decodes in bounded memory.
type Decoder struct {
	r       *bufio.Reader
	lim     Limits
	line    int
	fatal   error
	p       parser
	strings map[string]string // interned device, sensor and unit names
}

// NewDecoder returns a decoder reading NDJSON from r.
func NewDecoder(r io.Reader, lim Limits) *Decoder {
	lim = lim.withDefaults()
	// Room for the longest line plus its "\r\n", so that a line of exactly
	// MaxLineBytes is found whole in the buffer.
	return &Decoder{r: bufio.NewReaderSize(r, lim.MaxLineBytes+2), lim: lim}
}

// LineNumber returns the number of the line last returned by Decode.
func (d *Decoder) LineNumber() int { return d.line }

// Decode reads the next non-blank line into l. It returns io.EOF after the
// last line. A *LineError reports a bad line; decoding may go on with the
// next one, unless the error is ErrTooManyLines or the reader failed, after
// which Decode returns the same error again.
func (d *Decoder) Decode(l *Line) error {
	for {
		if d.fatal != nil {
			return d.fatal
		}
		raw, err := d.readLine()
		if err != nil {
			return err
		}
		if raw == nil {
			continue // blank line
		}
		if err := d.p.parseLine(raw, l, d.intern); err != nil {
			err.Line = d.line
			return err
		}
		return nil
	}
}

// readLine returns the next line without its line ending, nil for a blank
// line, or an error.
func (d *Decoder) readLine() ([]byte, error) {
	raw, err := d.r.ReadSlice('\n')
	if len(raw) == 0 && err != nil {
		if err != io.EOF {
			d.fatal = fmt.Errorf("reading batch after line %d: %w", d.line, err)
			return nil, d.fatal
		}
		return nil, io.EOF
	}
	d.line++
	if d.line > d.lim.MaxLines {
		d.fatal = &LineError{Line: d.line, Err: fmt.Errorf("%w: more than %d", ErrTooManyLines, d.lim.MaxLines)}
		return nil, d.fatal
	}
	tooLong := false
	if err == bufio.ErrBufferFull {
		tooLong = true
		for err == bufio.ErrBufferFull { // skip the rest of the line
			_, err = d.r.ReadSlice('\n')
		}
	}
	if err != nil && err != io.EOF {
		d.fatal = fmt.Errorf("reading batch line %d: %w", d.line, err)
		return nil, d.fatal
	}
	raw = bytes.TrimSuffix(raw, []byte{'\n'})
	raw = bytes.TrimSuffix(raw, []byte{'\r'})
	if d.line == 1 {
		raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // a byte order mark
	}
	if tooLong || len(raw) > d.lim.MaxLineBytes {
		return nil, &LineError{Line: d.line, Err: fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, d.lim.MaxLineBytes)}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	return raw, nil
}

// intern returns b as a string, reusing an earlier allocation for names
// that repeat line after line (device, sensor, unit).
func (d *Decoder) intern(b []byte) string {
	if len(b) > MaxSensorLen {
		return string(b) // too long to be valid; not worth keeping
	}
	if s, ok := d.strings[string(b)]; ok {
		return s
	}
	if d.strings == nil || len(d.strings) >= 4096 {
		d.strings = make(map[string]string)
	}
	s := string(b)
	d.strings[s] = s
	return s
}

// Fields of a line, as bits, to find missing and duplicate ones.
const (
	fDevice = 1 << iota
	fStream
	fSeq
	fSensor
	fValue
	fUnit
	fLabels
	fTimestamp
	fClock
	fDropped

	readingFields = fSeq | fSensor | fValue | fUnit | fLabels | fTimestamp | fClock
)

// parser decodes one line of wire contract v1: a JSON object whose known
// fields are checked as they are read and whose unknown fields are skipped.
// Duplicate known fields are refused, since two values would be ambiguous.
type parser struct {
	b       []byte
	i       int
	scratch []byte
}

const maxDepth = 32 // nesting of unknown values that we skip

func syntaxErr(field string, at int, format string, args ...any) *LineError {
	return &LineError{Field: field, Err: fmt.Errorf("%w at byte %d: "+format, append([]any{ErrSyntax, at + 1}, args...)...)}
}

func (p *parser) parseLine(b []byte, l *Line, intern func([]byte) string) *LineError {
	*p = parser{b: b, scratch: p.scratch[:0]}
	*l = Line{}
	r := &l.Reading
	var seen int
	var dropped Dropped
	p.ws()
	if !p.eat('{') {
		return syntaxErr("", p.i, "a line must be a JSON object")
	}
	p.ws()
	if !p.eat('}') {
		for {
			p.ws()
			key, err := p.str("")
			if err != nil {
				return err
			}
			bit := fieldBit(key)
			field := fieldName(bit)
			if bit != 0 && seen&bit != 0 {
				return &LineError{Field: field, Err: fmt.Errorf("%w: duplicate field", ErrInvalid)}
			}
			seen |= bit
			p.ws()
			if !p.eat(':') {
				return syntaxErr(field, p.i, "want ':' after a key")
			}
			p.ws()
			if err := p.value(bit, field, r, &dropped, intern); err != nil {
				return err
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat('}') {
				break
			}
			return syntaxErr("", p.i, "want ',' or '}'")
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return syntaxErr("", p.i, "data after the object")
	}

	for _, f := range []int{fDevice, fStream} {
		if seen&f == 0 {
			return &LineError{Field: fieldName(f), Err: ErrMissing}
		}
	}
	if seen&fDropped != 0 {
		if seen&readingFields != 0 {
			return &LineError{Field: "dropped", Err: fmt.Errorf("%w: a dropped-range line carries no reading fields", ErrInvalid)}
		}
		l.Kind = KindDropped
		dropped.Device, dropped.Stream = r.Device, r.Stream
		l.Dropped = dropped
		l.Reading = Reading{}
		if err := l.Dropped.Validate(); err != nil {
			return fromField(err)
		}
		return nil
	}
	for _, f := range []int{fSeq, fSensor, fValue, fTimestamp} {
		if seen&f == 0 {
			return &LineError{Field: fieldName(f), Err: ErrMissing}
		}
	}
	l.Kind = KindReading
	if err := r.Validate(); err != nil {
		return fromField(err)
	}
	return nil
}

func fromField(err error) *LineError {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &LineError{Field: fe.Field, Err: fe.Err}
	}
	return &LineError{Err: err}
}

func fieldBit(key []byte) int {
	switch string(key) {
	case "device":
		return fDevice
	case "stream":
		return fStream
	case "seq":
		return fSeq
	case "sensor":
		return fSensor
	case "value":
		return fValue
	case "unit":
		return fUnit
	case "labels":
		return fLabels
	case "timestamp":
		return fTimestamp
	case "clock":
		return fClock
	case "dropped":
		return fDropped
	}
	return 0
}

func fieldName(bit int) string {
	switch bit {
	case fDevice:
		return "device"
	case fStream:
		return "stream"
	case fSeq:
		return "seq"
	case fSensor:
		return "sensor"
	case fValue:
		return "value"
	case fUnit:
		return "unit"
	case fLabels:
		return "labels"
	case fTimestamp:
		return "timestamp"
	case fClock:
		return "clock"
	case fDropped:
		return "dropped"
	}
	return ""
}

// value reads the value of one field into r or dropped.
func (p *parser) value(bit int, field string, r *Reading, dropped *Dropped, intern func([]byte) string) *LineError {
	switch bit {
	case 0:
		return p.skip(0)
	case fDevice, fSensor, fUnit:
		s, err := p.str(field)
		if err != nil {
			return err
		}
		name := intern(s)
		switch bit {
		case fDevice:
			r.Device = name
		case fSensor:
			r.Sensor = name
		default:
			r.Unit = name
		}
	case fStream:
		s, err := p.str(field)
		if err != nil {
			return err
		}
		id, perr := parseStreamID(s)
		if perr != nil {
			return &LineError{Field: field, Err: perr}
		}
		r.Stream = id
	case fSeq:
		n, err := p.uint(field)
		if err != nil {
			return err
		}
		r.Seq = n
	case fValue:
		at := p.i
		num, err := p.number(field)
		if err != nil {
			return err
		}
		v, perr := strconv.ParseFloat(string(num), 64)
		if perr != nil || math.IsInf(v, 0) {
			return &LineError{Field: field, Err: fmt.Errorf("%w: %s at byte %d is not a finite float64", ErrInvalid, num, at+1)}
		}
		r.Value = v
	case fTimestamp:
		s, err := p.str(field)
		if err != nil {
			return err
		}
		t, perr := time.Parse(time.RFC3339Nano, string(s))
		if perr != nil {
			return &LineError{Field: field, Err: fmt.Errorf("%w: %q is not an RFC 3339 time", ErrInvalid, s)}
		}
		r.Time = t.UTC()
	case fClock:
		s, err := p.str(field)
		if err != nil {
			return err
		}
		switch string(s) {
		case "unsynced":
			r.Unsynced = true
		case "synced":
		default:
			return &LineError{Field: field, Err: fmt.Errorf(`%w: want "unsynced" or "synced", got %q`, ErrInvalid, s)}
		}
	case fLabels:
		return p.labels(r)
	case fDropped:
		return p.dropped(dropped)
	}
	return nil
}

func (p *parser) labels(r *Reading) *LineError {
	if !p.eat('{') {
		return &LineError{Field: "labels", Err: fmt.Errorf("%w: must be an object of strings", ErrInvalid)}
	}
	p.ws()
	if p.eat('}') {
		return nil // no labels: the same as none given
	}
	r.Labels = make(map[string]string)
	for {
		p.ws()
		k, err := p.str("labels")
		if err != nil {
			return err
		}
		key := string(k)
		if _, dup := r.Labels[key]; dup {
			return &LineError{Field: "labels", Err: fmt.Errorf("%w: duplicate label %q", ErrInvalid, key)}
		}
		if len(r.Labels) == MaxLabels {
			return &LineError{Field: "labels", Err: fmt.Errorf("%w: more than %d labels", ErrInvalid, MaxLabels)}
		}
		p.ws()
		if !p.eat(':') {
			return syntaxErr("labels", p.i, "want ':' after a key")
		}
		p.ws()
		if p.peek() != '"' {
			return &LineError{Field: "labels", Err: fmt.Errorf("%w: label %q must be a string", ErrInvalid, key)}
		}
		v, err := p.str("labels")
		if err != nil {
			return err
		}
		r.Labels[key] = string(v)
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return nil
		}
		return syntaxErr("labels", p.i, "want ',' or '}'")
	}
}

func (p *parser) dropped(d *Dropped) *LineError {
	if !p.eat('{') {
		return &LineError{Field: "dropped", Err: fmt.Errorf(`%w: must be {"from":S1,"to":S2}`, ErrInvalid)}
	}
	var haveFrom, haveTo bool
	p.ws()
	if !p.eat('}') {
		for {
			p.ws()
			k, err := p.str("dropped")
			if err != nil {
				return err
			}
			key := string(k)
			p.ws()
			if !p.eat(':') {
				return syntaxErr("dropped", p.i, "want ':' after a key")
			}
			p.ws()
			switch key {
			case "from", "to":
				if (key == "from" && haveFrom) || (key == "to" && haveTo) {
					return &LineError{Field: "dropped", Err: fmt.Errorf("%w: duplicate %q", ErrInvalid, key)}
				}
				n, err := p.uint("dropped")
				if err != nil {
					return err
				}
				if key == "from" {
					d.From, haveFrom = n, true
				} else {
					d.To, haveTo = n, true
				}
			default:
				if err := p.skip(1); err != nil {
					return err
				}
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat('}') {
				break
			}
			return syntaxErr("dropped", p.i, "want ',' or '}'")
		}
	}
	if !haveFrom || !haveTo {
		return &LineError{Field: "dropped", Err: fmt.Errorf(`%w: must have "from" and "to"`, ErrMissing)}
	}
	return nil
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a JSON string and returns its contents, which stay valid until
// the next call. Invalid UTF-8 is refused; lone surrogates in \u escapes
// become U+FFFD, as in encoding/json.
func (p *parser) str(field string) ([]byte, *LineError) {
	if !p.eat('"') {
		if field == "" {
			return nil, syntaxErr("", p.i, "want a string key")
		}
		return nil, &LineError{Field: field, Err: fmt.Errorf("%w: must be a string", ErrInvalid)}
	}
	start := p.i
	for p.i < len(p.b) { // fast path: no escapes, ASCII
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.i++
	}
	out := append(p.scratch[:0], p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			p.scratch = out
			return out, nil
		case c < 0x20:
			return nil, syntaxErr(field, p.i, "control character in a string")
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return nil, syntaxErr(field, p.i, "unterminated string")
			}
			e := p.b[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return nil, syntaxErr(field, p.i, `bad \u escape`)
				}
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
						save := p.i
						p.i += 2
						var ok bool
						if r2, ok = p.hex4(); !ok {
							return nil, syntaxErr(field, p.i, `bad \u escape`)
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r = dec
							r2 = -2
						} else {
							p.i = save // not a pair: the second escape stands alone
						}
					}
					if r2 != -2 {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, syntaxErr(field, p.i-2, "bad escape")
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, &LineError{Field: field, Err: fmt.Errorf("%w: not valid UTF-8 at byte %d", ErrInvalid, p.i+1)}
			}
			out = append(out, p.b[p.i:p.i+size]...)
			p.i += size
		}
	}
	return nil, syntaxErr(field, p.i, "unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// number reads a JSON number and returns its text.
func (p *parser) number(field string) ([]byte, *LineError) {
	start := p.i
	p.eat('-')
	switch c := p.peek(); {
	case c == '0':
		p.i++
	case '1' <= c && c <= '9':
		p.digits()
	default:
		if p.i == start && field != "" && p.jsonValueStart() {
			return nil, &LineError{Field: field, Err: fmt.Errorf("%w: must be a number", ErrInvalid)}
		}
		return nil, syntaxErr(field, p.i, "want a value")
	}
	if p.eat('.') {
		if n := p.digits(); n == 0 {
			return nil, syntaxErr(field, p.i, "want a digit after '.'")
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if n := p.digits(); n == 0 {
			return nil, syntaxErr(field, p.i, "want a digit in the exponent")
		}
	}
	return p.b[start:p.i], nil
}

func (p *parser) jsonValueStart() bool {
	switch p.peek() {
	case '"', '{', '[', 't', 'f', 'n':
		return true
	}
	return false
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// uint reads a JSON number that must be a non-negative integer without
// fraction or exponent, at most MaxSeq.
func (p *parser) uint(field string) (uint64, *LineError) {
	at := p.i
	num, err := p.number(field)
	if err != nil {
		return 0, err
	}
	if len(num) > 19 || num[0] == '-' || bytes.ContainsAny(num, ".eE") {
		return 0, &LineError{Field: field, Err: fmt.Errorf("%w: %s at byte %d is not an integer between 0 and %d", ErrInvalid, num, at+1, uint64(MaxSeq))}
	}
	var n uint64
	for _, c := range num {
		n = n*10 + uint64(c-'0')
	}
	if n > MaxSeq {
		return 0, &LineError{Field: field, Err: fmt.Errorf("%w: %s is more than %d", ErrInvalid, num, uint64(MaxSeq))}
	}
	return n, nil
}

// skip passes over one JSON value of any kind (an unknown field's).
func (p *parser) skip(depth int) *LineError {
	if depth > maxDepth {
		return syntaxErr("", p.i, "nested deeper than %d", maxDepth)
	}
	switch c := p.peek(); c {
	case '"':
		_, err := p.str("")
		return err
	case '{', '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.i++
		p.ws()
		if p.eat(closer) {
			return nil
		}
		for {
			p.ws()
			if c == '{' {
				if _, err := p.str(""); err != nil {
					return err
				}
				p.ws()
				if !p.eat(':') {
					return syntaxErr("", p.i, "want ':' after a key")
				}
				p.ws()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat(closer) {
				return nil
			}
			return syntaxErr("", p.i, "want ',' or %q", closer)
		}
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			_, err := p.number("")
			return err
		}
		return syntaxErr("", p.i, "want a value")
	}
}

func (p *parser) literal(word string) *LineError {
	if !bytes.HasPrefix(p.b[p.i:], []byte(word)) {
		return syntaxErr("", p.i, "want a value")
	}
	p.i += len(word)
	return nil
}
