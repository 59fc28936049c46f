package receiver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/outpost-iot/outpost/internal/reading"
)

// arrayError reports a JSON array body that is not an array of objects;
// Line is the 1-based element (0 for the array itself).
type arrayError struct {
	Line int
	Err  error
}

func (e *arrayError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("JSON body: %v", e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

func (e *arrayError) Unwrap() error { return e.Err }

// arrayReader turns a JSON array of readings into NDJSON, one element per
// line, so the wire codec validates each element exactly as it validates
// NDJSON lines (and element K is line K). It streams: it holds one
// element at a time, compacted, and stops at an element longer than the
// line limit, so a body of one huge element costs the line limit, not
// the body (the review's 31 KB gzip body of one 32 MiB string).
type arrayReader struct {
	r       *bufio.Reader
	maxLine int
	elem    []byte       // the element being read, compacted
	out     bytes.Buffer // the last element, validated, and its newline
	state   int          // 0: before '[', 1: after '[', 2: after an element, 3: after ']'
	n       int          // elements so far
	err     error
}

// newArrayReader reads a JSON array from r; maxLine bounds one element,
// compacted, as reading.Limits.MaxLineBytes bounds a line.
func newArrayReader(r io.Reader, maxLine int) *arrayReader {
	if maxLine <= 0 {
		maxLine = reading.DefaultMaxLineBytes
	}
	return &arrayReader{r: bufio.NewReaderSize(r, 16<<10), maxLine: maxLine}
}

func (a *arrayReader) Read(p []byte) (int, error) {
	for a.out.Len() == 0 {
		if a.err != nil {
			return 0, a.err
		}
		a.err = a.next()
	}
	return a.out.Read(p)
}

// next puts the next element, compacted, with a newline into a.out, or
// returns io.EOF after the array or the error that ended it.
func (a *arrayReader) next() error {
	for {
		c, err := a.skipSpace()
		switch {
		case err == io.EOF && a.state == 3:
			return io.EOF
		case err == io.EOF:
			return &arrayError{Line: a.line(), Err: errors.New("invalid JSON: unexpected end of input")}
		case err != nil:
			return err
		}
		switch a.state {
		case 0:
			if c != '[' {
				return &arrayError{Err: errors.New("an application/json body must be an array of readings")}
			}
			a.state = 1
		case 1, 2:
			switch {
			case c == ']':
				a.state = 3
			case a.state == 2 && c == ',':
				return a.element()
			case a.state == 1:
				a.r.UnreadByte()
				return a.element()
			default:
				return a.syntax(a.n+1, "expected comma after array element")
			}
		case 3:
			return &arrayError{Err: errDataAfterArray}
		}
	}
}

// line is the element an error of the array's syntax names.
func (a *arrayReader) line() int {
	if a.state == 1 || a.state == 2 {
		return a.n + 1
	}
	return 0
}

func (a *arrayReader) syntax(line int, format string, args ...any) error {
	return &arrayError{Line: line, Err: fmt.Errorf("invalid JSON: "+format, args...)}
}

// skipSpace returns the next byte that is not JSON whitespace.
func (a *arrayReader) skipSpace() (byte, error) {
	for {
		c, err := a.r.ReadByte()
		if err != nil {
			return 0, err
		}
		if !isSpace(c) {
			return c, nil
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// element reads one element into a.elem, dropping the whitespace between
// its tokens (one space stays where it separates two scalars, so that
// "1 2" stays invalid), and hands it, validated by json.Compact, to a.out.
// It stops as soon as the element is longer than the line limit.
func (a *arrayReader) element() error {
	a.n++
	a.elem = a.elem[:0]
	depth, inString, escaped, space := 0, false, false, false
	for {
		c, err := a.r.ReadByte()
		if err == io.EOF {
			return a.syntax(a.n, "unexpected end of input")
		}
		if err != nil {
			return err
		}
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			case c < 0x20:
				return a.syntax(a.n, "invalid character %q in string literal", c)
			}
		} else {
			if isSpace(c) {
				space = true
				if depth == 0 && len(a.elem) > 0 {
					break // a scalar element ends
				}
				continue
			}
			if depth == 0 && len(a.elem) > 0 && (c == ',' || c == ']') {
				a.r.UnreadByte() // the array's, not the element's
				break
			}
			if space && len(a.elem) > 0 && isScalarByte(a.elem[len(a.elem)-1]) && isScalarByte(c) {
				a.elem = append(a.elem, ' ')
			}
			space = false
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
		a.elem = append(a.elem, c)
		if len(a.elem) > a.maxLine {
			return &reading.LineError{Line: a.n, Err: fmt.Errorf("%w: more than %d bytes", reading.ErrLineTooLong, a.maxLine)}
		}
		if depth <= 0 && !inString && (c == '}' || c == ']' || (c == '"' && len(a.elem) > 1)) {
			break // a container or a string ends
		}
	}
	if err := json.Compact(&a.out, a.elem); err != nil {
		a.out.Reset()
		return a.syntax(a.n, "%w", err)
	}
	a.out.WriteByte('\n')
	a.state = 2
	return nil
}

// isScalarByte reports whether c may be part of a number or a literal.
func isScalarByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-' || c == '+'
}

var errDataAfterArray = errors.New("data after the array")
