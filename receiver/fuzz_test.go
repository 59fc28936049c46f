package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
)

// FuzzIngest throws arbitrary bodies at POST /v1/readings: the handler
// never panics, never answers 5xx for bad input, and a 200 accounts for
// every reading line of the batch.
func FuzzIngest(f *testing.F) {
	f.Add([]byte(lines(1, 3)), uint8(0), false)
	f.Add([]byte(line(1, `,"labels":{"a":"b"},"clock":"unsynced"`)+`{"device":"pi-07","stream":"9f3c2a71d04b88e1","dropped":{"from":2,"to":9}}`), uint8(0), false)
	f.Add([]byte("["+strings.TrimSpace(line(4, ""))+"]"), uint8(1), false)
	f.Add(gz([]byte(lines(5, 6))), uint8(0), true)
	f.Add([]byte(`{"device":"pi-08","stream":"9f3c2a71d04b88e1","seq":1}`), uint8(0), false)
	f.Add([]byte("[1, {}, null]"), uint8(1), false)
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0}, uint8(2), true)

	st, err := sqlite.Open(f.Context(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(st.Close)
	if err := st.Migrate(f.Context()); err != nil {
		f.Fatal(err)
	}
	if err := st.AddDevice(f.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		f.Fatal(err)
	}
	h := NewServer(st, Options{MaxBodyBytes: 64 << 10, MaxDecodedBytes: 256 << 10, MaxLines: 200}).Handler()
	types := []string{"application/x-ndjson", "application/json", "text/plain"}

	f.Fuzz(func(t *testing.T, body []byte, ctype uint8, gzipped bool) {
		r := httptest.NewRequest(http.MethodPost, "/v1/readings", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tokPi07)
		r.Header.Set("Content-Type", types[int(ctype)%len(types)])
		if gzipped {
			r.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("status %d for bad input: %s", rec.Code, rec.Body)
		}
		var eb errorBody
		if rec.Code != 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == "" {
				t.Fatalf("status %d with body %q: want {\"error\":…}", rec.Code, rec.Body)
			}
			return
		}
		var res store.Result
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("200 body %q: %v", rec.Body, err)
		}
		if want := countReadings(t, body, types[int(ctype)%len(types)], gzipped); res.Accepted+res.Duplicates+res.Conflicts != want {
			t.Fatalf("200 %+v does not account for the %d readings sent", res, want)
		}
	})
}

// countReadings decodes an accepted body again and counts its readings.
func countReadings(t *testing.T, body []byte, ctype string, gzipped bool) int {
	var src io.Reader = bytes.NewReader(body)
	if gzipped {
		zr, err := gzipReader(src)
		if err != nil {
			t.Fatalf("accepted a body that is not gzip: %v", err)
		}
		src = zr
	}
	if ctype == "application/json" {
		src = newArrayReader(src, reading.DefaultMaxLineBytes)
	}
	dec := reading.NewDecoder(src, reading.Limits{})
	n := 0
	for {
		var l reading.Line
		err := dec.Decode(&l)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("accepted a body whose re-decoding fails: %v", err)
		}
		if l.Kind == reading.KindReading {
			n++
		}
	}
}
