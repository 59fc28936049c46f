package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// NDJSON lines (and element K is line K). It holds one element at a time.
type arrayReader struct {
	dec   *json.Decoder
	buf   bytes.Buffer
	state int // 0: before '[', 1: in the array, 2: done
	n     int // elements so far
	err   error
}

func (a *arrayReader) Read(p []byte) (int, error) {
	for a.buf.Len() == 0 {
		if a.err != nil {
			return 0, a.err
		}
		a.err = a.next()
	}
	return a.buf.Read(p)
}

// next puts the next element, compacted, with a newline into a.buf.
func (a *arrayReader) next() error {
	if a.state == 0 {
		tok, err := a.dec.Token()
		if err != nil {
			return a.syntax(0, err)
		}
		if tok != json.Delim('[') {
			return &arrayError{Err: errors.New("an application/json body must be an array of readings")}
		}
		a.state = 1
	}
	if a.state == 2 {
		return io.EOF
	}
	if !a.dec.More() {
		if _, err := a.dec.Token(); err != nil { // the closing ']'
			return a.syntax(a.n+1, err)
		}
		if _, err := a.dec.Token(); err != io.EOF {
			return a.syntax(0, errDataAfterArray)
		}
		a.state = 2
		return io.EOF
	}
	var raw json.RawMessage
	if err := a.dec.Decode(&raw); err != nil {
		return a.syntax(a.n+1, err)
	}
	a.n++
	if err := json.Compact(&a.buf, raw); err != nil {
		return a.syntax(a.n, err)
	}
	a.buf.WriteByte('\n')
	return nil
}

// syntax marks JSON syntax errors with the element; errors of the
// underlying reader (limits, gzip) pass through unchanged.
func (a *arrayReader) syntax(line int, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return &arrayError{Line: line, Err: fmt.Errorf("invalid JSON: %w", err)}
	case errors.Is(err, io.EOF):
		return &arrayError{Line: line, Err: errors.New("invalid JSON: unexpected end of input")}
	case errors.Is(err, errDataAfterArray):
		return &arrayError{Err: err}
	}
	return err
}

var errDataAfterArray = errors.New("data after the array")
