package reading

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecode checks that the decoder never panics, accepts only lines that
// encoding/json also reads as the same values, and that every accepted
// batch survives encode → decode unchanged and re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(good + "\n"))
	f.Add([]byte(good + "\r\n\n" + `{"device":"d","stream":"0000000000000001","dropped":{"from":1,"to":2}}`))
	f.Add([]byte(`{"device":"d","stream":"00000000000000ff","seq":1,"sensor":"s\u00e9\ud83d\ude00\ud800x","value":-0.5e-3,"labels":{"k":"v"},"timestamp":"2026-11-22T11:00:00.5+01:00","clock":"unsynced","x":[{"y":null},true,false,1.5e3,"z"]}`))
	f.Add([]byte(strings.Replace(good, "21.5", "1e999", 1) + "\n" + good))
	f.Add([]byte("\xef\xbb\xbf" + good))
	f.Fuzz(func(t *testing.T, data []byte) {
		tm := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("hung on %q", data)) })
		defer tm.Stop()
		lim := Limits{MaxLineBytes: 4096, MaxLines: 1000}
		dec := NewDecoder(bytes.NewReader(data), lim)
		raw := bytes.Split(data, []byte{'\n'})
		var lines []Line
		for {
			var l Line
			err := dec.Decode(&l)
			if err == io.EOF {
				break
			}
			var le *LineError
			if err != nil && !errors.As(err, &le) {
				t.Fatalf("Decode error %v is not a *LineError", err)
			}
			if errors.Is(err, ErrTooManyLines) {
				break
			}
			if err != nil {
				if le.Line < 1 || le.Line > len(raw) {
					t.Fatalf("error names line %d of %d", le.Line, len(raw))
				}
				continue
			}
			checkAgainstEncodingJSON(t, raw[dec.LineNumber()-1], dec.LineNumber() == 1, &l)
			lines = append(lines, l)
		}

		// Round trip: encode what was accepted, decode it again.
		var enc []byte
		for i := range lines {
			enc = appendLine(enc, &lines[i])
		}
		again, errs := decodeAll(t, string(enc), lim)
		if len(errs) != 0 || len(again) != len(lines) {
			t.Fatalf("decode(encode(batch)) = %d lines, errors %v; want %d lines\n%s", len(again), errs, len(lines), enc)
		}
		var enc2 []byte
		for i := range again {
			if !sameLine(&again[i], &lines[i]) {
				t.Fatalf("line %d changed in a round trip:\n got %+v\nwant %+v", i+1, again[i], lines[i])
			}
			enc2 = appendLine(enc2, &again[i])
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not canonical:\n%s\n%s", enc, enc2)
		}
	})
}

func appendLine(b []byte, l *Line) []byte {
	if l.Kind == KindDropped {
		return AppendDropped(b, &l.Dropped)
	}
	return AppendReading(b, &l.Reading)
}

func sameLine(a, b *Line) bool {
	if a.Kind != b.Kind || a.Dropped != b.Dropped {
		return false
	}
	ra, rb := a.Reading, b.Reading
	if !ra.Time.Equal(rb.Time) || math.Float64bits(ra.Value) != math.Float64bits(rb.Value) {
		return false
	}
	ra.Time, ra.Value = rb.Time, rb.Value
	return reflect.DeepEqual(ra, rb)
}

// checkAgainstEncodingJSON: a line we accept is valid JSON, and
// encoding/json sees the same strings and numbers in it.
func checkAgainstEncodingJSON(t *testing.T, raw []byte, first bool, l *Line) {
	raw = bytes.TrimSuffix(raw, []byte{'\r'})
	if first {
		raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	}
	if !json.Valid(raw) {
		t.Fatalf("accepted a line encoding/json calls invalid: %q", raw)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("encoding/json cannot read accepted line %q: %v", raw, err)
	}
	if m["device"] != l.Reading.Device && m["device"] != l.Dropped.Device {
		t.Fatalf("device: encoding/json %q, we %q", m["device"], l.Reading.Device)
	}
	if l.Kind != KindReading {
		return
	}
	if m["sensor"] != l.Reading.Sensor {
		t.Fatalf("sensor: encoding/json %q, we %q", m["sensor"], l.Reading.Sensor)
	}
	if u, _ := m["unit"].(string); u != l.Reading.Unit {
		t.Fatalf("unit: encoding/json %q, we %q", u, l.Reading.Unit)
	}
	if v, err := m["value"].(json.Number).Float64(); err != nil || v != l.Reading.Value {
		t.Fatalf("value: encoding/json %v (%v), we %v", m["value"], err, l.Reading.Value)
	}
	if s, err := m["seq"].(json.Number).Int64(); err != nil || uint64(s) != l.Reading.Seq {
		t.Fatalf("seq: encoding/json %v (%v), we %v", m["seq"], err, l.Reading.Seq)
	}
	if labels, ok := m["labels"].(map[string]any); ok {
		if len(labels) != len(l.Reading.Labels) {
			t.Fatalf("labels: encoding/json %v, we %v", labels, l.Reading.Labels)
		}
		for k, v := range labels {
			if l.Reading.Labels[k] != v {
				t.Fatalf("label %q: encoding/json %q, we %q", k, v, l.Reading.Labels[k])
			}
		}
	}
}
