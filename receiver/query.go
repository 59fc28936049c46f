package receiver

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

// storedJSON is a stored reading as the query API shows it: the wire
// fields plus the time the receiver got it.
type storedJSON struct {
	Stream     string            `json:"stream"`
	Seq        uint64            `json:"seq"`
	Sensor     string            `json:"sensor"`
	Value      float64           `json:"value"`
	Unit       string            `json:"unit,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Timestamp  time.Time         `json:"timestamp"`
	Clock      string            `json:"clock,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
}

func toJSON(st *store.Stored) storedJSON {
	j := storedJSON{Stream: st.Stream.String(), Seq: st.Seq, Sensor: st.Sensor, Value: st.Value, Unit: st.Unit,
		Labels: st.Labels, Timestamp: st.Time, ReceivedAt: st.ReceivedAt}
	if st.Unsynced {
		j.Clock = "unsynced"
	}
	return j
}

// pathDevice returns the {id} of the path, checked, or answers 400.
func pathDevice(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := reading.ValidateDevice(id); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "device id: " + err.Error(), Field: "id"})
		return "", false
	}
	return id, true
}

// handleDevices is GET /v1/devices.
func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request) {
	ds, err := s.store.Devices(r.Context())
	if err != nil {
		s.unavailable(w, "list devices", err)
		return
	}
	if ds == nil {
		ds = []store.Device{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": ds})
}

// handleLatest is GET /v1/devices/{id}/latest: the newest reading of each
// sensor.
func (s *Server) handleLatest(w http.ResponseWriter, r *http.Request) {
	id, ok := pathDevice(w, r)
	if !ok {
		return
	}
	latest, err := s.store.Latest(r.Context(), id)
	if err != nil {
		s.unavailable(w, "latest readings", err)
		return
	}
	out := make([]storedJSON, len(latest))
	for i := range latest {
		out[i] = toJSON(&latest[i])
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": id, "latest": out})
}

// handleGaps is GET /v1/devices/{id}/gaps: per stream, the seq ranges
// never received, those the device reported dropped or keeps
// dead-lettered, and the newest conflicts.
func (s *Server) handleGaps(w http.ResponseWriter, r *http.Request) {
	id, ok := pathDevice(w, r)
	if !ok {
		return
	}
	gaps, err := s.store.Gaps(r.Context(), id)
	if err != nil {
		s.unavailable(w, "find gaps", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": id, "streams": gaps})
}

// handleQuery is GET /v1/readings?device=&sensor=&from=&to=[&clock=]
// [&format=csv]: the readings streamed in device time order, as NDJSON
// (wire contract v1, so an export is valid input to POST /v1/readings) or
// as CSV (format=csv or Accept: text/csv). clock=synced leaves out the
// readings flagged unsynced (their timestamps may be wrong), clock=unsynced
// keeps only those; all is the default.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := store.Query{Device: v.Get("device"), Sensor: v.Get("sensor")}
	if err := reading.ValidateDevice(q.Device); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "device: " + err.Error(), Field: "device"})
		return
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if x := v.Get(p.name); x != "" {
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("%s: %q is not an RFC 3339 time", p.name, x), Field: p.name})
				return
			}
			*p.t = t
		}
	}
	clock, err := store.ParseClockFilter(v.Get("clock"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error(), Field: "clock"})
		return
	}
	q.Clock = clock
	format := v.Get("format")
	if format == "" {
		format = "ndjson"
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Accept")); mt == "text/csv" {
			format = "csv"
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var emit func(*store.Stored) error
	finish := func() {}
	switch format {
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := reading.NewEncoder(bw)
		emit = func(st *store.Stored) error { return enc.Reading(&st.Reading) }
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(bw)
		cw.Write([]string{"device", "stream", "seq", "sensor", "timestamp", "value", "unit", "clock", "labels", "received_at"})
		emit = func(st *store.Stored) error {
			clock := "synced"
			if st.Unsynced {
				clock = "unsynced"
			}
			labels := ""
			if len(st.Labels) > 0 {
				b, _ := json.Marshal(st.Labels)
				labels = string(b)
			}
			cw.Write([]string{st.Device, st.Stream.String(), strconv.FormatUint(st.Seq, 10), csvSafe(st.Sensor),
				st.Time.Format(time.RFC3339Nano), strconv.FormatFloat(st.Value, 'g', -1, 64), csvSafe(st.Unit), clock,
				csvSafe(labels), st.ReceivedAt.Format(time.RFC3339Nano)})
			return cw.Error()
		}
		finish = cw.Flush
	default:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("format %q: want ndjson or csv", format), Field: "format"})
		return
	}
	n := 0
	err = s.store.Readings(r.Context(), q, func(st *store.Stored) error {
		n++
		return emit(st)
	})
	if err != nil {
		if n == 0 {
			s.unavailable(w, "query readings", err)
			return
		}
		// Headers are gone: cut the stream short so the client sees an
		// incomplete body rather than a silently truncated export.
		s.log.Warn("readings query failed mid-stream", "device", q.Device, "rows", n, "err", err)
		panic(http.ErrAbortHandler)
	}
	finish()
	bw.Flush()
}

// csvSafe keeps a spreadsheet from taking a cell for a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
