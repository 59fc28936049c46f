package receiver

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// The conformance suite's fixtures: its first reading's time and its stream.
var (
	t0         = storetest.T0
	testStream = storetest.Stream
)

func openSQLiteT(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func mustRequest(t *testing.T, method, path string) *http.Request {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), method, path, nil)
	r.Header.Set("Authorization", "Bearer "+tokPi07)
	return r
}

func withBody(r *http.Request, body string) *http.Request {
	r.Body = io.NopCloser(strings.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Type", "application/x-ndjson")
	return r
}

func gzipReader(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }
