package uplink

import (
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func testBatch(n int) *reading.Batch {
	b := &reading.Batch{Stream: 0x9f3c2a71d04b88e1, From: 1, To: uint64(n)}
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range n {
		b.Readings = append(b.Readings, reading.Reading{
			Device: "pi-07", Stream: 0x9f3c2a71d04b88e1, Seq: uint64(i + 1),
			Sensor: "demo.s0", Value: float64(i) / 100, Unit: "C", Time: t0.Add(time.Duration(i) * time.Second),
		})
	}
	b.Dropped = []reading.Dropped{{Device: "pi-07", Stream: 0x9f3c2a71d04b88e1, From: 100, To: 200}}
	return b
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// received is what a test receiver saw of one request.
type received struct {
	contentType, encoding, auth string
	lines                       []reading.Line
	err                         error // the body did not decode (a cut connection, say)
}

// decodeRequest reads a batch the way a receiver does.
func decodeRequest(t *testing.T, r *http.Request) received {
	got := received{contentType: r.Header.Get("Content-Type"), encoding: r.Header.Get("Content-Encoding"), auth: r.Header.Get("Authorization")}
	var body io.Reader = r.Body
	if got.encoding == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			got.err = err
			return got
		}
		body = zr
	}
	dec := reading.NewDecoder(body, reading.Limits{})
	for {
		var l reading.Line
		err := dec.Decode(&l)
		if err == io.EOF {
			return got
		}
		if err != nil {
			got.err = err
			return got
		}
		got.lines = append(got.lines, l)
	}
}

func newSender(t *testing.T, url string, o HTTPOptions) *HTTP {
	t.Helper()
	o.URL = url
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func TestHTTPSendAccepted(t *testing.T) {
	reqs := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/base/v1/readings" || r.Method != http.MethodPost {
			t.Errorf("request to %s %s; want POST /base/v1/readings", r.Method, r.URL.Path)
		}
		got := decodeRequest(t, r)
		if got.err != nil {
			t.Errorf("receiver cannot decode the batch: %v", got.err)
		}
		reqs <- got
		fmt.Fprint(w, `{"accepted":3,"duplicates":1,"conflicts":0,"corrected":0}`)
	}))
	defer srv.Close()
	h := newSender(t, srv.URL+"/base/", HTTPOptions{TokenFile: writeToken(t, "tok-1")})

	b := testBatch(4)
	res := h.Send(context.Background(), b)
	if res.Outcome != Accepted || res.Counts != (Counts{Accepted: 3, Duplicates: 1}) || res.Err != nil {
		t.Fatalf("Send = %+v; want accepted 3 + 1 duplicate", res)
	}
	got := <-reqs
	if got.contentType != "application/x-ndjson" || got.encoding != "gzip" || got.auth != "Bearer tok-1" {
		t.Errorf("headers: type %q, encoding %q, auth %q", got.contentType, got.encoding, got.auth)
	}
	if len(got.lines) != 5 || got.lines[4].Kind != reading.KindDropped || got.lines[4].Dropped != b.Dropped[0] {
		t.Fatalf("receiver got %d lines; want 4 readings then the dropped range", len(got.lines))
	}
	for i, l := range got.lines[:4] {
		if l.Reading.Seq != b.Readings[i].Seq || !l.Reading.Time.Equal(b.Readings[i].Time) {
			t.Errorf("line %d = %+v; want %+v", i+1, l.Reading, b.Readings[i])
		}
	}
}

func TestHTTPStatusTable(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		header        string // "Key: value"
		body          string
		want          Outcome
		line          int
		retryAfter    time.Duration
		misconfigured bool
		errHas        string
	}{
		{"200 wrong count", 200, "", `{"accepted":2,"duplicates":0,"conflicts":0}`, Retry, 0, 0, false, "accounts for 2 readings"},
		{"200 captive portal", 200, "", `<html>Welcome to Airport WiFi</html>`, Retry, 0, 0, false, "captive portal"},
		{"200 with conflicts", 200, "", `{"accepted":2,"duplicates":0,"conflicts":2}`, Accepted, 0, 0, false, ""},
		{"400 names a line", 400, "Content-Type: application/json", `{"error":"line 2: field \"value\": invalid","line":2}`, Rejected, 2, 0, false, `field "value"`},
		{"400 names the dropped line", 400, "Content-Type: application/json", `{"error":"bad range","line":5}`, Rejected, 5, 0, false, "bad range"},
		{"400 names no line", 400, "Content-Type: application/json", `{"error":"empty body"}`, Rejected, 0, 0, false, "empty body"},
		{"400 names a line we did not send", 400, "Content-Type: application/json", `{"error":"?","line":99}`, Rejected, 0, 0, false, ""},
		{"403 with a charset dead-lettered", 403, "Content-Type: application/json; charset=utf-8", `{"error":"revoked"}`, Rejected, 0, 0, false, "revoked"},
		// The same statuses from anything but the receiver (a proxy's
		// page) are no verdict on the batch: retried, misconfigured.
		{"403 HTML from a proxy retried", 403, "Content-Type: text/html", `<html><h1>403 Forbidden</h1>nginx</html>`, Retry, 0, 0, true, "not the receiver's"},
		{"400 plain text retried", 400, "Content-Type: text/plain", `{"error":"looks like JSON"}`, Retry, 0, 0, true, "text/plain"},
		{"415 JSON without an error retried", 415, "Content-Type: application/json", `{"message":"nope"}`, Retry, 0, 0, true, "nope"},
		{"403 no content type retried", 403, "", `Forbidden`, Retry, 0, 0, true, "Forbidden"},
		{"401 retried, misconfigured", 401, "", `{"error":"unknown token"}`, Retry, 0, 0, true, "token"},
		{"403 dead-lettered", 403, "Content-Type: application/json", `{"error":"line 1 names device pi-08"}`, Rejected, 0, 0, false, "pi-08"},
		{"404 retried, misconfigured", 404, "", `not found`, Retry, 0, 0, true, "base URL"},
		{"413 split", 413, "", ``, TooLarge, 0, 0, false, "413"},
		{"415 dead-lettered", 415, "Content-Type: application/json", `{"error":"unsupported encoding"}`, Rejected, 0, 0, false, "unsupported"},
		{"429 retry after", 429, "Retry-After: 7", ``, Retry, 0, 7 * time.Second, false, "429"},
		{"503 retry after", 503, "Retry-After: 120", `{"error":"database unavailable"}`, Retry, 0, 2 * time.Minute, false, "database"},
		{"500 retried", 500, "", `oops`, Retry, 0, 0, false, "500"},
		{"502 retried", 502, "", ``, Retry, 0, 0, false, "(empty body)"},
		{"409 retried", 409, "", ``, Retry, 0, 0, false, "409"},
		{"302 not followed", 302, "Location: http://portal.example/login", ``, Retry, 0, 0, false, "portal.example"},
		{"308 not followed, misconfigured", 308, "Location: https://elsewhere/v1/readings", ``, Retry, 0, 0, true, "not followed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var redirectedTo atomic.Bool
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/readings" {
					redirectedTo.Store(true)
				}
				io.Copy(io.Discard, r.Body)
				if k, v, ok := strings.Cut(tc.header, ": "); ok {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			res := newSender(t, srv.URL, HTTPOptions{}).Send(context.Background(), testBatch(4))
			if res.Unreachable {
				t.Errorf("Send = %+v; an answer from the receiver is never unreachable", res)
			}
			if res.Outcome != tc.want || res.Line != tc.line || res.RetryAfter != tc.retryAfter || res.Misconfigured != tc.misconfigured {
				t.Errorf("Send = %v line %d retryAfter %v misconfigured %v (%v); want %v line %d retryAfter %v misconfigured %v",
					res.Outcome, res.Line, res.RetryAfter, res.Misconfigured, res.Err, tc.want, tc.line, tc.retryAfter, tc.misconfigured)
			}
			if tc.errHas != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tc.errHas)) {
				t.Errorf("Send error = %v; want it to mention %q", res.Err, tc.errHas)
			}
			if redirectedTo.Load() {
				t.Errorf("the sender followed a redirect")
			}
		})
	}
}

func TestHTTPInvalidReadingRejectedUnsent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	b := testBatch(3)
	b.Readings[1].Sensor = "bad\nname"
	res := newSender(t, srv.URL, HTTPOptions{}).Send(context.Background(), b)
	if res.Outcome != Rejected || res.Line != 2 || hits.Load() != 0 {
		t.Errorf("Send(invalid line 2) = %+v after %d requests; want rejected at line 2, nothing sent", res, hits.Load())
	}
}

func TestHTTPConnectionFailuresAreRetried(t *testing.T) {
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res := newSender(t, "http://"+addr, HTTPOptions{}).Send(context.Background(), testBatch(1))
	if res.Outcome != Retry || res.Err == nil || !strings.Contains(res.Err.Error(), "refused") || !res.Unreachable {
		t.Errorf("Send to a closed port = %+v; want retry, unreachable, with 'connection refused'", res)
	}

	// A name that does not resolve (.invalid never does, RFC 6761).
	res = newSender(t, "http://receiver.invalid", HTTPOptions{}).Send(context.Background(), testBatch(1))
	if res.Outcome != Retry || !res.Unreachable {
		t.Errorf("Send to an unknown host = %+v; want retry, unreachable", res)
	}

	// A peer that never answers: the attempt times out and is retried.
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stall }))
	defer srv.Close()
	defer close(stall)
	start := time.Now()
	res = newSender(t, srv.URL, HTTPOptions{Timeout: 300 * time.Millisecond}).Send(context.Background(), testBatch(1))
	if res.Outcome != Retry || !errors.Is(res.Err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second || res.Unreachable {
		t.Errorf("Send to a stalled peer = %+v after %v; want retry on the attempt deadline, not unreachable (it may be working on it)", res, time.Since(start))
	}
}

func TestHTTPKeepAliveAndTokenRotation(t *testing.T) {
	var conns atomic.Int32
	auths := make(chan string, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auths <- r.Header.Get("Authorization")
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"accepted":2,"duplicates":0,"conflicts":0}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tokPath := writeToken(t, "old-token")
	h := newSender(t, srv.URL, HTTPOptions{TokenFile: tokPath})
	for range 3 {
		if res := h.Send(context.Background(), testBatch(2)); res.Outcome != Accepted {
			t.Fatalf("Send = %+v", res)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 sends opened %d connections; want 1 (keep-alive)", n)
	}
	// Rotate the token: the next send uses the new one, without a restart.
	time.Sleep(10 * time.Millisecond) // a distinct mtime on coarse clocks
	if err := os.WriteFile(tokPath, []byte("new-token-longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := h.Send(context.Background(), testBatch(2)); res.Outcome != Accepted {
		t.Fatalf("Send = %+v", res)
	}
	var last string
	for range 4 {
		last = <-auths
	}
	if last != "Bearer new-token-longer" {
		t.Errorf("after rotation the sender used %q; want the new token", last)
	}
}

func TestHTTPTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"accepted":1,"duplicates":0,"conflicts":0}`)
	}))
	defer srv.Close()
	// Without the CA the system roots do not trust the test server.
	if res := newSender(t, srv.URL, HTTPOptions{}).Send(context.Background(), testBatch(1)); res.Outcome != Retry || !strings.Contains(res.Err.Error(), "certificate") {
		t.Errorf("Send without ca_file = %+v; want a certificate error, retried", res)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := newSender(t, srv.URL, HTTPOptions{CAFile: ca}).Send(context.Background(), testBatch(1)); res.Outcome != Accepted {
		t.Errorf("Send with ca_file = %+v; want accepted", res)
	}
}

func TestNewHTTPErrorsNameTheOption(t *testing.T) {
	for _, tc := range []struct {
		o    HTTPOptions
		want string
	}{
		{HTTPOptions{URL: "ftp://x"}, "url"},
		{HTTPOptions{URL: "http://x", TokenFile: "/nonexistent"}, "token_file"},
		{HTTPOptions{URL: "http://x", CAFile: "/nonexistent"}, "ca_file"},
		{HTTPOptions{URL: "http://x", ClientCert: "/nonexistent", ClientKey: "/nonexistent"}, "client certificate"},
	} {
		if _, err := NewHTTP(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewHTTP(%+v) = %v; want an error naming %s", tc.o, err, tc.want)
		}
	}
}

func TestSendStatus(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.URL.Path + " " + r.Header.Get("Content-Type") + " " + string(b)
		if strings.Contains(string(b), "fail") {
			http.Error(w, "nope", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	h := newSender(t, srv.URL, HTTPOptions{})
	if err := h.SendStatus(context.Background(), []byte(`{"device":"pi-07"}`)); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != `/v1/status application/json {"device":"pi-07"}` {
		t.Errorf("status request = %q", g)
	}
	if err := h.SendStatus(context.Background(), []byte(`{"fail":1}`)); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("SendStatus to a 503 = %v; want an error naming the status", err)
	}
	<-got
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"-5":                            0,
		"soon":                          0,
		"Wed, 25 Nov 2026 12:01:30 GMT": 90 * time.Second,
		"Wed, 25 Nov 2026 11:00:00 GMT": 0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v; want %v", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	top := Backoff{Rand: func() float64 { return 0.999999 }}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := top.Delay(i+1, 0); got > w || got < w*99/100 {
			t.Errorf("Delay(%d) at the top of the jitter = %v; want just under %v", i+1, got, w)
		}
	}
	if got := top.Delay(1000, 0); got > 30*time.Second {
		t.Errorf("Delay(1000) = %v; want capped at 30s", got)
	}
	if got := (Backoff{Rand: func() float64 { return 0 }}).Delay(5, 0); got != 0 {
		t.Errorf("full jitter at 0 = %v; want 0", got)
	}
	if got := top.Delay(1, 42*time.Second); got != 42*time.Second {
		t.Errorf("Delay with Retry-After 42s = %v", got)
	}
	if got := top.Delay(1, time.Hour); got != 5*time.Minute {
		t.Errorf("Delay with Retry-After 1h = %v; want capped at 5m", got)
	}
	for _, r := range []float64{0, 0.5, 0.999999} {
		if got := (Backoff{Rand: func() float64 { return r }}).UnreachableDelay(); got < 500*time.Millisecond || got >= time.Second {
			t.Errorf("UnreachableDelay at %v = %v; want in [0.5s, 1s)", r, got)
		}
	}
	if got := (Backoff{UnreachableMax: 200 * time.Millisecond}).UnreachableDelay(); got < 100*time.Millisecond || got >= 200*time.Millisecond {
		t.Errorf("UnreachableDelay with UnreachableMax 200ms = %v", got)
	}
	// The real random source stays within the ceiling.
	for range 1000 {
		if d := (Backoff{}).Delay(3, 0); d < 0 || d >= 2*time.Second {
			t.Fatalf("Delay(3) = %v; want in [0, 2s)", d)
		}
	}
}
