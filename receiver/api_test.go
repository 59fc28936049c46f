package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/internal/logbuf"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, openSQLiteT(t))
	body := `{"device":"pi-07","version":"1.0","uptime_s":12,"clock":"synced","spool":{"readings":3}}`
	for _, c := range []struct {
		name   string
		r      req
		status int
		want   string
	}{
		{"ok", req{token: tokPi07, ctype: "application/json", body: []byte(body)}, 200, `{"stored":true}`},
		{"other device", req{token: tokPi08, ctype: "application/json", body: []byte(body)}, 403,
			`{"error":"device \"pi-07\" is not the token's device \"pi-08\"","field":"device"}`},
		{"not an object", req{token: tokPi07, ctype: "application/json", body: []byte(`[1]`)}, 400,
			`{"error":"status must be a JSON object: json: cannot unmarshal array into Go value of type struct { Device *string \"json:\\\"device\\\"\" }"}`},
		{"no token", req{ctype: "application/json", body: []byte(body)}, 401, `{"error":"missing bearer token"}`},
		{"ndjson", req{token: tokPi07, ctype: "application/x-ndjson", body: []byte(body)}, 415,
			`{"error":"unsupported content type \"application/x-ndjson\": want application/json"}`},
	} {
		c.r.path = "/v1/status"
		status, got, _ := do(t, srv, c.r)
		if status != c.status || got != c.want {
			t.Errorf("%s: got %d %s\n\twant %d %s", c.name, status, got, c.status, c.want)
		}
	}
	status, got, _ := do(t, srv, req{method: "GET", path: "/v1/devices", token: adminTok})
	var ds struct{ Devices []store.Device }
	if err := json.Unmarshal([]byte(got), &ds); err != nil || status != 200 {
		t.Fatalf("GET /v1/devices = %d %s (%v)", status, got, err)
	}
	for _, d := range ds.Devices {
		if d.ID == "pi-07" && (!strings.Contains(string(d.LastStatus), `"uptime_s":12`) || d.Clock != "synced") {
			t.Errorf("pi-07 last_status = %s, clock %q; want the heartbeat, clock synced", d.LastStatus, d.Clock)
		}
	}
}

func TestQueryAPI(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, openSQLiteT(t))
	if st, body, _ := do(t, srv, req{path: "/v1/readings", token: tokPi07, ctype: "application/x-ndjson", body: []byte(lines(1, 4) + strings.Replace(line(5, ""), `"t"`, `"h"`, 1))}); st != 200 {
		t.Fatalf("ingest = %d %s", st, body)
	}
	for _, c := range []struct {
		name, path, token string
		status            int
		want              string
	}{
		{"no token", "/v1/devices", "", 401, `{"error":"missing bearer token"}`},
		{"device token", "/v1/devices", tokPi07, 401, `{"error":"not the admin token"}`},
		{"latest", "/v1/devices/pi-07/latest", adminTok, 200, ""},
		{"bad id", "/v1/devices/pi%2007/latest", adminTok, 400, `{"error":"device id: invalid: character ' ' at offset 2 is not one of [A-Za-z0-9._-]","field":"id"}`},
		{"gaps", "/v1/devices/pi-07/gaps", adminTok, 200,
			`{"device":"pi-07","streams":[{"stream":"9f3c2a71d04b88e1","highest_seq":5,"missing":[],"dropped":[],"dead_lettered":[],"conflicts":[]}]}`},
		{"readings ndjson", "/v1/readings?device=pi-07&sensor=t", adminTok, 200, strings.TrimSpace(strings.ReplaceAll(lines(1, 4), ".123Z", ".123Z"))},
		{"readings csv", "/v1/readings?device=pi-07&sensor=h&format=csv", adminTok, 200,
			"device,stream,seq,sensor,timestamp,value,unit,clock,labels,received_at\npi-07,9f3c2a71d04b88e1,5,h,2026-11-22T10:00:00.123Z,21.5,C,synced,,"},
		{"readings clock=synced", "/v1/readings?device=pi-07&sensor=t&clock=synced", adminTok, 200, strings.TrimSpace(lines(1, 4))},
		{"readings clock=unsynced", "/v1/readings?device=pi-07&clock=unsynced", adminTok, 200, ""},
		{"readings bad clock", "/v1/readings?device=pi-07&clock=maybe", adminTok, 400, `{"error":"clock \"maybe\": want synced, unsynced or all","field":"clock"}`},
		{"readings bad from", "/v1/readings?device=pi-07&from=yesterday", adminTok, 400, `{"error":"from: \"yesterday\" is not an RFC 3339 time","field":"from"}`},
		{"readings no device", "/v1/readings", adminTok, 400, `{"error":"device: invalid: must not be empty","field":"device"}`},
		{"readings bad format", "/v1/readings?device=pi-07&format=xml", adminTok, 400, `{"error":"format \"xml\": want ndjson or csv","field":"format"}`},
		{"healthz", "/healthz", "", 200, "ok"},
		{"readyz", "/readyz", "", 200, "ready"},
	} {
		status, got, _ := do(t, srv, req{method: "GET", path: c.path, token: c.token})
		if c.name == "readings csv" { // received_at varies
			got = got[:strings.LastIndexByte(got, ',')+1]
		}
		if status != c.status || (c.want != "" && got != c.want) {
			t.Errorf("%s: got %d %s\n\twant %d %s", c.name, status, got, c.status, c.want)
		}
		if c.name == "readings clock=unsynced" && got != "" {
			t.Errorf("%s: got %s; want no reading (none is flagged)", c.name, got)
		}
		if c.name == "latest" {
			var l struct{ Latest []storedJSON }
			if err := json.Unmarshal([]byte(got), &l); err != nil || len(l.Latest) != 2 || l.Latest[0].Sensor != "h" || l.Latest[1].Seq != 4 {
				t.Errorf("latest = %s (%v); want h seq 5 and t seq 4", got, err)
			}
		}
	}
	// The NDJSON export is valid input again (offline transfer).
	_, export, _ := do(t, srv, req{method: "GET", path: "/v1/readings?device=pi-07", token: adminTok})
	if st, body, _ := do(t, srv, req{path: "/v1/readings", token: tokPi07, ctype: "application/x-ndjson", body: []byte(export)}); st != 200 ||
		body != `{"accepted":0,"duplicates":5,"conflicts":0,"corrected":0}` {
		t.Errorf("re-import of the export = %d %s; want all duplicates", st, body)
	}
	_, metrics, _ := do(t, srv, req{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`outpost_receiver_readings_total{result="accepted",transport="http"} 5`,
		`outpost_receiver_readings_total{result="duplicate",transport="http"} 5`,
		`outpost_receiver_batch_duration_seconds_count{transport="http"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestQueryAPIDisabled(t *testing.T) {
	t.Parallel()
	st := openSQLiteT(t)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := NewServer(st, Options{})
	rec := newRecorder()
	srv.Handler().ServeHTTP(rec, mustRequest(t, "GET", "/v1/devices"))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "--admin-token-file") {
		t.Errorf("GET /v1/devices without admin token configured = %d %s; want 403 naming --admin-token-file", rec.Code, rec.Body)
	}
}

// unavailableStore fails every call as a database that is down.
type unavailableStore struct{ store.Store }

func (unavailableStore) Authenticate(context.Context, []byte) (string, error) { return "pi-07", nil }
func (unavailableStore) Ingest(context.Context, string, *store.Batch) (store.Result, error) {
	return store.Result{}, errors.Join(store.ErrUnavailable, errors.New("dial tcp: connection refused"))
}
func (unavailableStore) Ready(context.Context) error { return store.ErrUnavailable }

func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv := NewServer(unavailableStore{}, Options{RetryAfter: 7e9})
	rec := newRecorder()
	r := mustRequest(t, "POST", "/v1/readings")
	r.Body = http.NoBody
	r = withBody(r, line(1, ""))
	srv.Handler().ServeHTTP(rec, r)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "7" || strings.TrimSpace(rec.Body.String()) != `{"error":"store unavailable, retry later"}` {
		t.Errorf("ingest with the store down = %d Retry-After %q %s; want 503, 7, no detail", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	rec = newRecorder()
	srv.Handler().ServeHTTP(rec, mustRequest(t, "GET", "/readyz"))
	if rec.Code != 503 {
		t.Errorf("readyz with the store down = %d; want 503", rec.Code)
	}
	_ = reading.Reading{}
}

// TestConflictsLoggedOnce: a conflict is warned about once per device and
// stream, however many follow (they are counted in the metrics), over
// HTTP and MQTT alike (one conflictLog per server).
func TestConflictsLoggedOnce(t *testing.T) {
	t.Parallel()
	st := openSQLiteT(t)
	var logBuf logbuf.Buffer
	opt := testOptions
	opt.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(t.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, opt).Handler())
	t.Cleanup(srv.Close)
	other := strings.ReplaceAll(lines(1, 3), "9f3c2a71d04b88e1", "0123456789abcdef")
	for i, body := range []string{
		lines(1, 3), other, // stored
		strings.ReplaceAll(lines(1, 3), "21.5", "1"),                                    // 3 conflicts in the first stream
		strings.ReplaceAll(lines(2, 3), "21.5", "2"),                                    // 2 more there
		strings.ReplaceAll(other, "21.5", "3"),                                          // 3 in the second stream
		strings.Replace(line(4, `,"clock":"unsynced"`), "2026", "1970", 1), line(4, ""), // a correction
	} {
		if st, got, _ := do(t, srv, req{path: "/v1/readings", token: tokPi07, ctype: "application/x-ndjson", body: []byte(body)}); st != 200 {
			t.Fatalf("batch %d: %d %s", i, st, got)
		}
	}
	warnings := regexp.MustCompile(`level=WARN msg="readings conflict with stored ones[^\n]*stream=(\w+) seq=(\d+) conflicts=(\d+)`).FindAllStringSubmatch(logBuf.String(), -1)
	if len(warnings) != 2 || warnings[0][1] != "9f3c2a71d04b88e1" || warnings[0][2] != "1" || warnings[0][3] != "3" ||
		warnings[1][1] != "0123456789abcdef" {
		t.Errorf("conflict warnings = %q; want one per stream, the first naming seq 1 and 3 conflicts\n%s", warnings, logBuf.String())
	}
	_, metrics, _ := do(t, srv, req{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`outpost_receiver_readings_total{result="conflict",transport="http"} 8`,
		`outpost_receiver_readings_total{result="corrected",transport="http"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
