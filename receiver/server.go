package receiver

import (
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// AdminTokenHash is HashToken of the admin token, which the query API
	// requires; nil disables the query API.
	AdminTokenHash []byte
	// MaxBodyBytes bounds a request body as sent (default 8 MiB).
	MaxBodyBytes int64
	// MaxDecodedBytes bounds a body after gzip decompression (default 32 MiB).
	MaxDecodedBytes int64
	// MaxLineBytes and MaxLines bound one line and one batch
	// (defaults 16 KiB, 20 000).
	MaxLineBytes int
	MaxLines     int
	// RetryAfter is what a 503 asks the device to wait (default 5s).
	RetryAfter time.Duration
	// IngestTimeout bounds one batch's database work (default 30s).
	IngestTimeout time.Duration
	// Now is the receiver's clock (default time.Now).
	Now func() time.Time
	// MaxInFlight bounds the batches of one device handled at once
	// (default 8: the uplink's default in_flight of 4, its fresh-readings
	// worker and room for a resend of a batch whose answer was lost);
	// more are answered 429
	// with Retry-After, so that one device cannot queue up the store.
	MaxInFlight int
}

// Defaults of Options.
const (
	DefaultMaxBodyBytes    = 8 << 20
	DefaultMaxDecodedBytes = 32 << 20
	DefaultMaxLines        = 20_000
	maxStatusBytes         = 64 << 10
)

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxDecodedBytes <= 0 {
		o.MaxDecodedBytes = DefaultMaxDecodedBytes
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = reading.DefaultMaxLineBytes
	}
	if o.MaxLines <= 0 {
		o.MaxLines = DefaultMaxLines
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 5 * time.Second
	}
	if o.IngestTimeout <= 0 {
		o.IngestTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 8
	}
	return o
}

// Server answers the receiver's HTTP API: ingest, status, queries, health
// and metrics.
type Server struct {
	store     store.Store
	opt       Options
	log       *slog.Logger
	metrics   *metrics
	conflicts *conflictLog

	inflightMu sync.Mutex
	inflight   map[string]int // batches being handled, per device
}

// enter counts a batch of device in flight, unless MaxInFlight are.
func (s *Server) enter(device string) bool {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if s.inflight[device] >= s.opt.MaxInFlight {
		return false
	}
	if s.inflight == nil {
		s.inflight = map[string]int{}
	}
	s.inflight[device]++
	return true
}

func (s *Server) leave(device string) {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if s.inflight[device]--; s.inflight[device] <= 0 {
		delete(s.inflight, device)
	}
}

// NewServer returns a server storing into st.
func NewServer(st store.Store, opt Options) *Server {
	opt = opt.withDefaults()
	return &Server{store: st, opt: opt, log: opt.Logger, metrics: newMetrics(), conflicts: &conflictLog{}}
}

// Handler returns the receiver's HTTP routes. All routing is here.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// Devices (device token).
	mux.HandleFunc("POST /v1/readings", s.handleReadings)
	mux.HandleFunc("POST /v1/status", s.handleStatus)
	// Query API (admin token).
	mux.HandleFunc("GET /v1/devices", s.admin(s.handleDevices))
	mux.HandleFunc("GET /v1/devices/{id}/latest", s.admin(s.handleLatest))
	mux.HandleFunc("GET /v1/devices/{id}/gaps", s.admin(s.handleGaps))
	mux.HandleFunc("GET /v1/readings", s.admin(s.handleQuery))
	// Operations (no token).
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return s.recover(mux)
}

// recover answers a panicking handler with a bare 500 and logs the panic:
// no stack trace ever goes to a client.
func (s *Server) recover(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// errorBody is every error answer; Line (and Field) name the bad line of
// a batch, 1-based (for a JSON array body: the element).
type errorBody struct {
	Error string `json:"error"`
	Line  int    `json:"line,omitempty"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// unavailable answers 503 with Retry-After, after logging what failed.
func (s *Server) unavailable(w http.ResponseWriter, op string, err error) {
	s.log.Warn("store unavailable", "op", op, "err", err)
	s.metrics.storeErrs.WithLabelValues(op).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int((s.opt.RetryAfter+time.Second-1)/time.Second)))
	writeError(w, http.StatusServiceUnavailable, "store unavailable, retry later")
}

// device authenticates the request's device token. It answers the request
// itself and returns false when it fails.
func (s *Server) device(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
		writeError(w, http.StatusUnauthorized, "missing bearer token")
		return "", false
	}
	id, err := s.store.Authenticate(r.Context(), store.HashToken(tok))
	switch {
	case err == nil:
		return id, true
	case errors.Is(err, store.ErrUnknownToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unknown token")
	case errors.Is(err, store.ErrRevoked):
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "token revoked")
	default:
		s.unavailable(w, "authenticate", err)
	}
	return "", false
}

// admin wraps a query handler with the admin token check.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opt.AdminTokenHash == nil {
			writeError(w, http.StatusForbidden, "query API disabled: start the receiver with --admin-token-file")
			return
		}
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost-admin"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token")
			return
		}
		if subtle.ConstantTimeCompare(store.HashToken(tok), s.opt.AdminTokenHash) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost-admin", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "not the admin token")
			return
		}
		h(w, r)
	}
}

// Errors of reading a request body.
var (
	errDecodedTooLarge = errors.New("decompressed body too large")
	errBadEncoding     = errors.New("unsupported content encoding")
	errBadType         = errors.New("unsupported content type")
)

// limitReader fails with errDecodedTooLarge past n bytes (where
// io.LimitReader would end quietly and truncate the batch).
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var b [1]byte
		n, err := l.r.Read(b[:])
		if n > 0 {
			return 0, errDecodedTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// body returns the request body, decompressed, within the limits; a JSON
// array body is turned into NDJSON lines, one per element.
func (s *Server) body(w http.ResponseWriter, r *http.Request, maxDecoded int64, allowArray bool) (io.Reader, func(), error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, nil, fmt.Errorf("%w %q: want application/x-ndjson or application/json", errBadType, r.Header.Get("Content-Type"))
	}
	array := false
	switch mt {
	case "application/x-ndjson", "application/jsonl", "application/json-seq":
		if !allowArray {
			return nil, nil, fmt.Errorf("%w %q: want application/json", errBadType, mt)
		}
	case "application/json":
		array = allowArray
	default:
		return nil, nil, fmt.Errorf("%w %q: want application/x-ndjson or application/json", errBadType, mt)
	}
	if r.ContentLength > s.opt.MaxBodyBytes {
		return nil, nil, &http.MaxBytesError{Limit: s.opt.MaxBodyBytes}
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, s.opt.MaxBodyBytes)
	done := func() {}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, ok := gzipReaders.Get().(*gzip.Reader)
		if ok {
			err = zr.Reset(src)
		} else {
			zr, err = gzip.NewReader(src)
		}
		if err != nil {
			if zr != nil {
				gzipReaders.Put(zr)
			}
			if errors.Is(err, io.EOF) {
				return nil, nil, fmt.Errorf("%w: empty gzip body", errBadGzip)
			}
			return nil, nil, err
		}
		src, done = zr, func() {
			zr.Close()
			gzipReaders.Put(zr)
		}
	default:
		return nil, nil, fmt.Errorf("%w %q: want gzip or none", errBadEncoding, enc)
	}
	src = &limitReader{r: src, n: maxDecoded}
	if array {
		src = newArrayReader(src, s.opt.MaxLineBytes)
	}
	return src, done, nil
}

var errBadGzip = errors.New("invalid gzip data")

// isTimeout reports whether err is a read deadline passing (the server's
// ReadTimeout on a slow body).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// gzipReaders keeps gzip readers for reuse: a new one allocates its
// inflater's window and tables (about 40 KB) for every batch.
var gzipReaders sync.Pool

// bodyError answers a failure of reading the body (not a bad line).
func (s *Server) bodyError(w http.ResponseWriter, err error) (status int) {
	var tooBig *http.MaxBytesError
	var arr *arrayError
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &tooBig):
		status = http.StatusRequestEntityTooLarge
		writeError(w, status, fmt.Sprintf("body larger than %d bytes: split the batch", tooBig.Limit))
	case errors.Is(err, errDecodedTooLarge):
		status = http.StatusRequestEntityTooLarge
		writeError(w, status, fmt.Sprintf("decompressed body larger than %d bytes: split the batch", s.opt.MaxDecodedBytes))
	case errors.Is(err, errBadType), errors.Is(err, errBadEncoding):
		status = http.StatusUnsupportedMediaType
		writeError(w, status, err.Error())
	case errors.As(err, &arr):
		status = http.StatusBadRequest
		writeJSON(w, status, errorBody{Error: arr.Error(), Line: arr.Line})
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, &corrupt),
		errors.Is(err, errBadGzip), errors.Is(err, io.ErrUnexpectedEOF):
		status = http.StatusBadRequest
		writeError(w, status, "invalid gzip data: "+err.Error())
	case isTimeout(err):
		// A body too slow for the server's read timeout: not malformed
		// (a 400 would dead-letter the batch), and the connection is done.
		status = http.StatusRequestTimeout
		w.Header().Set("Connection", "close")
		writeError(w, status, "request body not received in time: send it again")
	default:
		// The error may name the connection's addresses: log it, do not
		// tell it.
		s.log.Info("reading a request body failed", "err", err)
		status = http.StatusBadRequest
		writeError(w, status, "reading the body failed")
	}
	return status
}

// handleReadings is POST /v1/readings: one batch, stored all or nothing.
func (s *Server) handleReadings(w http.ResponseWriter, r *http.Request) {
	start := s.opt.Now()
	device, ok := s.device(w, r)
	if !ok {
		s.metrics.rejected.WithLabelValues("http", "auth").Inc()
		return
	}
	if !s.enter(device) {
		s.metrics.rejected.WithLabelValues("http", "429").Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("more than %d batches of this device at once: retry later", s.opt.MaxInFlight))
		return
	}
	defer s.leave(device)
	b, status, msg := s.decodeBatch(w, r, device)
	if status != 0 {
		s.metrics.rejected.WithLabelValues("http", strconv.Itoa(status)).Inc()
		if msg != "" {
			s.log.Info("batch refused", "device", device, "status", status, "err", msg)
		}
		return
	}
	b.ReceivedAt = s.opt.Now().UTC()
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.IngestTimeout)
	defer cancel()
	res, err := s.store.Ingest(ctx, device, b)
	releaseBatch(b)
	if err != nil {
		s.metrics.rejected.WithLabelValues("http", "503").Inc()
		s.unavailable(w, "ingest", err)
		return
	}
	s.metrics.committed("http", res)
	s.metrics.latency.WithLabelValues("http").Observe(s.opt.Now().Sub(start).Seconds())
	s.conflicts.note(s.log, "http", device, res)
	writeJSON(w, http.StatusOK, res)
}

// decodeBatch reads and checks a whole batch before anything is stored.
// On failure it has answered the request and returns the status.
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request, device string) (*store.Batch, int, string) {
	src, done, err := s.body(w, r, s.opt.MaxDecodedBytes, true)
	if err != nil {
		return nil, s.bodyError(w, err), err.Error()
	}
	defer done()
	b, err := decodeLines(src, reading.Limits{MaxLineBytes: s.opt.MaxLineBytes, MaxLines: s.opt.MaxLines}, device, "token")
	var le *reading.LineError
	var de *deviceError
	switch {
	case err == nil:
		return b, 0, ""
	case errors.As(err, &le):
		status := http.StatusBadRequest
		if errors.Is(err, reading.ErrTooManyLines) {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, status, errorBody{Error: le.Error(), Line: le.Line, Field: le.Field})
		return nil, status, le.Error()
	case errors.As(err, &de):
		writeJSON(w, http.StatusForbidden, errorBody{Error: de.Error(), Line: de.Line, Field: "device"})
		return nil, http.StatusForbidden, de.Error()
	case errors.Is(err, errEmptyBatch):
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, http.StatusBadRequest, ""
	}
	return nil, s.bodyError(w, err), err.Error()
}

// deviceError reports a line naming another device than the batch's
// (the token's, or the MQTT topic's).
type deviceError struct {
	Line      int
	Got, Want string
	Of        string // "token" or "topic"
}

func (e *deviceError) Error() string {
	return fmt.Sprintf("line %d: device %q is not the %s's device %q", e.Line, e.Got, e.Of, e.Want)
}

var errEmptyBatch = errors.New("empty batch: no readings and no dropped range")

// decodeLines decodes a whole batch of device's lines; of says what named
// the device ("token" or "topic") for a line naming another. The error is
// a *reading.LineError, a *deviceError, errEmptyBatch, or the reader's.
func decodeLines(src io.Reader, lim reading.Limits, device, of string) (*store.Batch, error) {
	dec := reading.NewDecoder(src, lim)
	b := &store.Batch{}
	if rs, ok := readingsPool.Get().(*[]reading.Reading); ok {
		b.Readings = (*rs)[:0]
	}
	for {
		var l reading.Line
		err := dec.Decode(&l)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		lineDevice := l.Reading.Device
		if l.Kind == reading.KindDropped {
			lineDevice = l.Dropped.Device
		}
		if lineDevice != device {
			return nil, &deviceError{Line: dec.LineNumber(), Got: lineDevice, Want: device, Of: of}
		}
		switch l.Kind {
		case reading.KindReading:
			b.Readings = append(b.Readings, l.Reading)
		case reading.KindDropped:
			b.Dropped = append(b.Dropped, l.Dropped)
		}
	}
	if len(b.Readings) == 0 && len(b.Dropped) == 0 {
		return nil, errEmptyBatch
	}
	return b, nil
}

// readingsPool keeps the readings slices of batches done with, so that a
// batch is decoded into a slice grown by an earlier one instead of
// growing a new one (about 110 KB of garbage per 500 readings).
var readingsPool sync.Pool

// maxPooledReadings bounds the slices kept: a rare huge batch's is left
// to the garbage collector.
const maxPooledReadings = 4096

// releaseBatch hands b's readings slice back for reuse; b must not be
// used after. Readings are values (their strings and labels stay shared
// with nobody but b), so reuse overwrites them.
func releaseBatch(b *store.Batch) {
	rs := b.Readings
	b.Readings = nil
	if cap(rs) == 0 || cap(rs) > maxPooledReadings {
		return
	}
	clear(rs)
	rs = rs[:0]
	readingsPool.Put(&rs)
}

// handleStatus is POST /v1/status: the device heartbeat, kept as the last
// one per device.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	device, ok := s.device(w, r)
	if !ok {
		return
	}
	src, done, err := s.body(w, r, maxStatusBytes, false)
	if err != nil {
		s.statusBodyError(w, err)
		return
	}
	defer done()
	raw, err := io.ReadAll(src)
	if err != nil {
		s.statusBodyError(w, err)
		return
	}
	var st struct {
		Device *string `json:"device"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		writeError(w, http.StatusBadRequest, "status must be a JSON object: "+err.Error())
		return
	}
	if st.Device != nil && *st.Device != device {
		writeJSON(w, http.StatusForbidden, errorBody{Error: fmt.Sprintf("device %q is not the token's device %q", *st.Device, device), Field: "device"})
		return
	}
	if err := s.store.SaveStatus(r.Context(), device, raw, s.opt.Now().UTC()); err != nil {
		s.unavailable(w, "save status", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"stored": true})
}

// statusBodyError is bodyError for a heartbeat, whose limit is its own
// (not a batch's, and not split but trimmed).
func (s *Server) statusBodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || errors.Is(err, errDecodedTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("status larger than the heartbeat limit of %d bytes: trim it (dead_letter_ranges)", maxStatusBytes))
		return
	}
	s.bodyError(w, err)
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		w.Header().Set("Retry-After", "5")
		msg := "not ready: store unavailable"
		if errors.Is(err, store.ErrNotMigrated) {
			msg = "not ready: " + err.Error()
		} else {
			s.log.Warn("not ready", "err", err) // may name the database's address
		}
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	io.WriteString(w, "ready\n")
}
