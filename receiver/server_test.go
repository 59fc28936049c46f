package receiver

import (
	"bytes"
	"compress/gzip"
	"github.com/outpost-iot/outpost/receiver/store"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	tokPi07    = "otk_test-token-of-pi-07"
	tokPi08    = "otk_test-token-of-pi-08"
	tokRevoked = "otk_test-token-revoked"
	adminTok   = "admin-token-for-tests-0123456789"
)

var testOptions = Options{
	MaxBodyBytes:    1 << 20,
	MaxDecodedBytes: 4 << 20,
	MaxLines:        1000,
	AdminTokenHash:  store.HashToken(adminTok),
}

// newTestServer serves the API over st, with devices pi-07, pi-08 and a
// revoked one registered.
func newTestServer(t *testing.T, st store.Store) *httptest.Server {
	t.Helper()
	ctx := t.Context()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for id, tok := range map[string]string{"pi-07": tokPi07, "pi-08": tokPi08, "old": tokRevoked} {
		if err := st.AddDevice(ctx, id, store.HashToken(tok), t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RevokeDevice(ctx, "old", t0); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, testOptions).Handler())
	t.Cleanup(srv.Close)
	return srv
}

type req struct {
	method, path string
	token        string // "" for none
	ctype        string
	encoding     string
	body         []byte
}

func do(t testing.TB, srv *httptest.Server, r req) (int, string, http.Header) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	hr, err := http.NewRequestWithContext(t.Context(), r.method, srv.URL+r.path, bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	if r.encoding != "" {
		hr.Header.Set("Content-Encoding", r.encoding)
	}
	resp, err := srv.Client().Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// line returns one wire line of pi-07's test stream.
func line(seq int, extra string) string {
	return `{"device":"pi-07","stream":"9f3c2a71d04b88e1","seq":` + strconv.Itoa(seq) +
		`,"sensor":"t","value":21.5,"unit":"C","timestamp":"2026-11-22T10:00:00.123Z"` + extra + "}\n"
}

func lines(from, to int) string {
	var sb strings.Builder
	for i := from; i <= to; i++ {
		sb.WriteString(line(i, ""))
	}
	return sb.String()
}

// TestIngestTable is the bad-input table: each case's exact status and
// body. The cases run in order on one store (the duplicate cases rely on
// earlier ones).
func TestIngestTable(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, openSQLiteT(t))
	const nd = "application/x-ndjson"
	bomb := gz(bytes.Repeat([]byte("a"), 64<<20)) // 64 MiB in ~64 KiB of gzip
	cases := []struct {
		name   string
		r      req
		status int
		body   string
	}{
		{"ok", req{body: []byte(lines(1, 3))},
			200, `{"accepted":3,"duplicates":0,"conflicts":0,"corrected":0}`},
		{"duplicate batch", req{body: []byte(lines(1, 3))},
			200, `{"accepted":0,"duplicates":3,"conflicts":0,"corrected":0}`},
		{"partially duplicate batch", req{body: []byte(lines(2, 5))},
			200, `{"accepted":2,"duplicates":2,"conflicts":0,"corrected":0}`},
		{"conflict", req{body: []byte(strings.Replace(line(5, ""), "21.5", "22.5", 1) + line(6, ""))},
			200, `{"accepted":1,"duplicates":0,"conflicts":1,"corrected":0}`},
		{"unsynced stored", req{body: []byte(strings.Replace(line(7, `,"clock":"unsynced"`), "2026-11-22T10", "1970-01-01T00", 1))},
			200, `{"accepted":1,"duplicates":0,"conflicts":0,"corrected":0}`},
		{"unsynced correction", req{body: []byte(line(7, ""))},
			200, `{"accepted":1,"duplicates":0,"conflicts":0,"corrected":1}`},
		{"gzip", req{encoding: "gzip", body: gz([]byte(lines(8, 9)))},
			200, `{"accepted":2,"duplicates":0,"conflicts":0,"corrected":0}`},
		{"json array", req{ctype: "application/json", body: []byte("[" + strings.ReplaceAll(strings.TrimSpace(lines(10, 11)), "\n", ",\n ") + "]")},
			200, `{"accepted":2,"duplicates":0,"conflicts":0,"corrected":0}`},
		{"dropped range only", req{body: []byte(`{"device":"pi-07","stream":"9f3c2a71d04b88e1","dropped":{"from":20,"to":29}}`)},
			200, `{"accepted":0,"duplicates":0,"conflicts":0,"corrected":0}`},

		{"malformed JSON", req{body: []byte(line(12, "") + `{"device":"pi-07",` + "\n")},
			400, `{"error":"line 2: invalid JSON at byte 19: want a string key","line":2}`},
		{"missing field", req{body: []byte(strings.Replace(line(12, ""), `"value":21.5,`, "", 1))},
			400, `{"error":"line 1: field \"value\": missing","line":1,"field":"value"}`},
		{"NaN", req{body: []byte(strings.Replace(line(12, ""), "21.5", "NaN", 1))},
			400, `{"error":"line 1: field \"value\": invalid JSON at byte 77: want a value","line":1,"field":"value"}`},
		{"Inf", req{body: []byte(strings.Replace(line(12, ""), "21.5", "1e999", 1))},
			400, `{"error":"line 1: field \"value\": invalid: 1e999 at byte 77 is not a finite float64","line":1,"field":"value"}`},
		{"bad timestamp", req{body: []byte(strings.Replace(line(12, ""), "2026-11-22T10:00:00.123Z", "2026-11-22 10:00", 1))},
			400, `{"error":"line 1: field \"timestamp\": invalid: \"2026-11-22 10:00\" is not an RFC 3339 time","line":1,"field":"timestamp"}`},
		{"oversized line", req{body: []byte(line(12, "") + line(13, `,"x":"`+strings.Repeat("a", 17<<10)+`"`))},
			400, `{"error":"line 2: line too long: more than 16384 bytes","line":2}`},
		{"too many lines", req{body: []byte(lines(100, 1100))},
			413, `{"error":"line 1001: too many lines in batch: more than 1000","line":1001}`},
		{"body over the limit", req{body: bytes.Repeat([]byte("\n"), 1<<20+1)},
			413, `{"error":"body larger than 1048576 bytes: split the batch"}`},
		{"gzip bomb", req{encoding: "gzip", body: bomb},
			413, `{"error":"decompressed body larger than 4194304 bytes: split the batch"}`},
		{"corrupt gzip", req{encoding: "gzip", body: append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0}, "garbage"...)},
			400, `{"error":"invalid gzip data: reading batch after line 0: flate: corrupt input before offset 1"}`},
		{"wrong content type", req{ctype: "text/plain", body: []byte(line(12, ""))},
			415, `{"error":"unsupported content type \"text/plain\": want application/x-ndjson or application/json"}`},
		{"no content type", req{ctype: "-", body: []byte(line(12, ""))},
			415, `{"error":"unsupported content type \"\": want application/x-ndjson or application/json"}`},
		{"wrong encoding", req{encoding: "br", body: []byte(line(12, ""))},
			415, `{"error":"unsupported content encoding \"br\": want gzip or none"}`},
		{"missing token", req{token: "-", body: []byte(line(12, ""))},
			401, `{"error":"missing bearer token"}`},
		{"unknown token", req{token: "otk_nope", body: []byte(line(12, ""))},
			401, `{"error":"unknown token"}`},
		{"revoked token", req{token: tokRevoked, body: []byte(line(12, ""))},
			401, `{"error":"token revoked"}`},
		{"other device's readings", req{token: tokPi08, body: []byte(line(12, ""))},
			403, `{"error":"line 1: device \"pi-07\" is not the token's device \"pi-08\"","line":1,"field":"device"}`},
		{"empty body", req{body: nil},
			400, `{"error":"empty batch: no readings and no dropped range"}`},
		{"blank lines only", req{body: []byte("\n\n  \n")},
			400, `{"error":"empty batch: no readings and no dropped range"}`},
		{"json not an array", req{ctype: "application/json", body: []byte(line(12, ""))},
			400, `{"error":"JSON body: an application/json body must be an array of readings"}`},
		{"json array bad element", req{ctype: "application/json", body: []byte("[" + strings.TrimSpace(line(12, "")) + `, {"device":"pi-07"}]`)},
			400, `{"error":"line 2: field \"stream\": missing","line":2,"field":"stream"}`},
		{"json array broken", req{ctype: "application/json", body: []byte("[" + strings.TrimSpace(line(12, "")) + `, {"device":]`)},
			400, `{"error":"line 2: invalid JSON: invalid character ']' looking for beginning of value","line":2}`},
		{"wrong method", req{method: http.MethodPut, body: []byte(line(12, ""))},
			405, `Method Not Allowed`},

		// Conflict, duplicate or correction is decided on sensor, unit,
		// value bits and device time to the microsecond; the stored
		// reading always stays.
		{"conflict on unit", req{body: []byte(strings.Replace(line(1, ""), `"unit":"C"`, `"unit":"F"`, 1))},
			200, `{"accepted":0,"duplicates":0,"conflicts":1,"corrected":0}`},
		{"conflict on sensor", req{body: []byte(strings.Replace(line(2, ""), `"sensor":"t"`, `"sensor":"h"`, 1))},
			200, `{"accepted":0,"duplicates":0,"conflicts":1,"corrected":0}`},
		{"conflict on time (1µs)", req{body: []byte(strings.Replace(line(3, ""), ".123Z", ".123001Z", 1))},
			200, `{"accepted":0,"duplicates":0,"conflicts":1,"corrected":0}`},
		{"duplicate below a microsecond", req{body: []byte(strings.Replace(line(3, ""), ".123Z", ".1230004Z", 1))},
			200, `{"accepted":0,"duplicates":1,"conflicts":0,"corrected":0}`},
		{"duplicate with other labels", req{body: []byte(line(3, `,"labels":{"room":"b"}`))},
			200, `{"accepted":0,"duplicates":1,"conflicts":0,"corrected":0}`},
		{"resend of a corrected reading", req{body: []byte(line(7, ""))},
			200, `{"accepted":0,"duplicates":1,"conflicts":0,"corrected":0}`},
		{"unsynced resend of a corrected reading", req{body: []byte(strings.Replace(line(7, `,"clock":"unsynced"`), "2026-11-22T10", "1970-01-01T00", 1))},
			200, `{"accepted":0,"duplicates":0,"conflicts":1,"corrected":0}`},
		{"unsynced stored again", req{body: []byte(strings.Replace(line(40, `,"clock":"unsynced"`), "2026-11-22T10", "1970-01-01T00", 1))},
			200, `{"accepted":1,"duplicates":0,"conflicts":0,"corrected":0}`},
		{"correction with another value", req{body: []byte(strings.Replace(line(40, ""), "21.5", "23.5", 1))},
			200, `{"accepted":0,"duplicates":0,"conflicts":1,"corrected":0}`},
		{"unsynced resend at another unsynced time", req{body: []byte(strings.Replace(line(40, `,"clock":"unsynced"`), "2026-11-22T10", "1970-01-01T01", 1))},
			200, `{"accepted":0,"duplicates":0,"conflicts":1,"corrected":0}`},
		{"correction, conflict and new in one batch", req{body: []byte(line(40, "") + line(41, "") + strings.Replace(line(41, ""), "21.5", "0", 1))},
			200, `{"accepted":2,"duplicates":0,"conflicts":1,"corrected":1}`},
	}
	for _, c := range cases {
		if c.r.path == "" {
			c.r.path = "/v1/readings"
		}
		switch c.r.token {
		case "":
			c.r.token = tokPi07
		case "-":
			c.r.token = ""
		}
		switch c.r.ctype {
		case "":
			c.r.ctype = nd
		case "-":
			c.r.ctype = ""
		}
		status, body, hdr := do(t, srv, c.r)
		if status != c.status || body != c.body {
			t.Errorf("%s: got %d %s\n\twant %d %s", c.name, status, body, c.status, c.body)
		}
		if status == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
	}
	// Nothing of the refused batches was stored: seq 12 never arrived.
	// Every conflict is listed with both versions, newest first.
	st, body, _ := do(t, srv, req{method: "GET", path: "/v1/devices/pi-07/gaps", token: adminTok})
	body = regexp.MustCompile(`"received_at":"[^"]*"`).ReplaceAllString(body, `"received_at":"…"`)
	conflict := func(seq int, stored, received string) string {
		return `{"seq":` + strconv.Itoa(seq) + `,"stored":{` + stored + `},"received":{` + received + `},"received_at":"…"}`
	}
	const (
		v   = `"sensor":"t","value":21.5,"unit":"C","timestamp":"2026-11-22T10:00:00.123Z"`
		u40 = `"sensor":"t","value":21.5,"unit":"C","timestamp":"1970-01-01T00:00:00.123Z","clock":"unsynced"`
	)
	want := `{"device":"pi-07","streams":[{"stream":"9f3c2a71d04b88e1","highest_seq":41,"missing":[[12,19],[30,39]],"dropped":[[20,29]],"dead_lettered":[],"conflicts":[` +
		strings.Join([]string{
			conflict(41, `"sensor":"t","value":21.5,"unit":"C","timestamp":"2026-11-22T10:00:00.123Z"`, `"sensor":"t","value":0,"unit":"C","timestamp":"2026-11-22T10:00:00.123Z"`),
			conflict(40, u40, `"sensor":"t","value":21.5,"unit":"C","timestamp":"1970-01-01T01:00:00.123Z","clock":"unsynced"`),
			conflict(40, u40, strings.Replace(v, "21.5", "23.5", 1)),
			conflict(7, v, `"sensor":"t","value":21.5,"unit":"C","timestamp":"1970-01-01T00:00:00.123Z","clock":"unsynced"`),
			conflict(3, v, strings.Replace(v, ".123Z", ".123001Z", 1)),
			conflict(2, v, strings.Replace(v, `"t"`, `"h"`, 1)),
			conflict(1, v, strings.Replace(v, `"C"`, `"F"`, 1)),
			conflict(5, v, strings.Replace(v, "21.5", "22.5", 1)),
		}, ",") + `]}]}`
	if st != 200 || body != want {
		t.Errorf("gaps after the table = %d %s\n\twant 200 %s", st, body, want)
	}
	// The per-stream accounting counts them, and the corrections.
	st, body, _ = do(t, srv, req{method: "GET", path: "/v1/devices", token: adminTok})
	if wantSum := `"streams":[{"stream":"9f3c2a71d04b88e1","highest_seq":41,"received":13,"dropped":10,"dead_lettered":0,"missing":18,"conflicts":8,"corrected":2}]`; st != 200 || !strings.Contains(body, wantSum) {
		t.Errorf("GET /v1/devices = %d %s\n\twant pi-07 with %s", st, body, wantSum)
	}
}
