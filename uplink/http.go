package uplink

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// HTTPOptions configure the HTTP sender.
type HTTPOptions struct {
	// URL is the receiver's base URL; /v1/readings and /v1/status are
	// appended.
	URL string
	// TokenFile holds the device's bearer token. It is read again
	// whenever it changes, so a rotated token needs no restart.
	TokenFile string
	// CAFile replaces the system roots; ClientCert and ClientKey give a
	// client certificate. All optional.
	CAFile, ClientCert, ClientKey string
	// NoGzip sends batches uncompressed.
	NoGzip bool
	// InFlight is how many sends may run at once (connections kept).
	InFlight int
	// Timeout bounds one attempt, from dial to the response body
	// (default 45s).
	Timeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// HTTP sends batches to an Outpost receiver: POST /v1/readings, NDJSON,
// gzip, a bearer token, and the wire contract's table of statuses.
type HTTP struct {
	client      *http.Client
	readingsURL string // POST /v1/readings
	statusURL   string // POST /v1/status
	token       *tokenFile
	gzip        bool
	timeout     time.Duration
	userAgent   string
	bufs        sync.Pool
}

// NewHTTP returns an HTTP sender, or an error naming the option at fault.
func NewHTTP(o HTTPOptions) (*HTTP, error) {
	base, err := url.Parse(o.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("uplink http: url %q: want http(s)://host[:port][/path]", o.URL)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("uplink http: ca_file: %w", err)
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink http: ca_file %s: no PEM certificate in it", o.CAFile)
		}
	}
	if o.ClientCert != "" || o.ClientKey != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("uplink http: client certificate: %w", err)
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	inFlight := max(o.InFlight, 1)
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   inFlight,
		ForceAttemptHTTP2:     true,
	}
	h := &HTTP{
		client: &http.Client{
			Transport: transport,
			// A batch is never POSTed anywhere but where configured: a
			// captive portal's or proxy's redirect must not swallow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		readingsURL: base.JoinPath("v1", "readings").String(),
		statusURL:   base.JoinPath("v1", "status").String(),
		gzip:        !o.NoGzip,
		timeout:     o.Timeout,
		userAgent:   o.UserAgent,
	}
	if h.timeout <= 0 {
		h.timeout = 45 * time.Second
	}
	if o.TokenFile != "" {
		h.token = &tokenFile{path: o.TokenFile}
		if _, err := h.token.get(); err != nil {
			return nil, fmt.Errorf("uplink http: token_file: %w", err)
		}
	}
	return h, nil
}

// Close drops the idle connections.
func (h *HTTP) Close() { h.client.CloseIdleConnections() }

// Send posts one batch and classifies the answer.
func (h *HTTP) Send(ctx context.Context, b *reading.Batch) Result {
	buf := h.getBuf()
	defer h.bufs.Put(buf)
	if res, ok := encodeBatch(buf, b, h.gzip); !ok {
		return res
	}
	resp, body, err := h.post(ctx, h.readingsURL, "application/x-ndjson", buf.Bytes())
	if err != nil {
		return Result{Outcome: Retry, Err: err, Unreachable: unreachable(err)}
	}
	return classify(resp, body, len(b.Readings), len(b.Readings)+len(b.Dropped))
}

// SendStatus sends the device heartbeat (a JSON document) to /v1/status.
func (h *HTTP) SendStatus(ctx context.Context, heartbeat []byte) error {
	resp, body, err := h.post(ctx, h.statusURL, "application/json", heartbeat)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST %s: %s: %s", h.statusURL, resp.Status, snippet(body))
	}
	return nil
}

func (h *HTTP) getBuf() *bytes.Buffer {
	if b, ok := h.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// encodeBatch writes the batch as NDJSON, readings first and the
// dropped-range lines after them, gzipped if asked. A reading that does not
// validate rejects the batch at its line without anything being sent.
func encodeBatch(buf *bytes.Buffer, b *reading.Batch, gz bool) (Result, bool) {
	var w io.Writer = buf
	var zw *gzip.Writer
	if gz {
		zw = getGzipWriter(buf)
		defer putGzipWriter(zw)
		w = zw
	}
	enc := reading.NewEncoder(w)
	for i := range b.Readings {
		if err := enc.Reading(&b.Readings[i]); err != nil {
			return Result{Outcome: Rejected, Line: i + 1, Err: fmt.Errorf("line %d: %w", i+1, err)}, false
		}
	}
	for i := range b.Dropped {
		if err := enc.Dropped(&b.Dropped[i]); err != nil {
			line := len(b.Readings) + i + 1
			return Result{Outcome: Rejected, Line: line, Err: fmt.Errorf("line %d: %w", line, err)}, false
		}
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return Result{Outcome: Retry, Err: fmt.Errorf("compressing batch: %w", err)}, false
		}
	}
	return Result{}, true
}

// Compressors are kept between batches: a new one allocates about a
// megabyte of state. One is always kept, out of the GC's reach, so a
// device sending a batch a second never allocates one again (a sync.Pool
// alone is emptied by every second GC cycle: two new compressors a
// minute at 10 readings/s); those a drain uses beside it go to a pool, and
// are freed once the drain is over.
var (
	gzipKept    = make(chan *gzip.Writer, 1)
	gzipWriters sync.Pool
)

func getGzipWriter(w io.Writer) *gzip.Writer {
	var zw *gzip.Writer
	select {
	case zw = <-gzipKept:
	default:
		zw, _ = gzipWriters.Get().(*gzip.Writer)
	}
	if zw != nil {
		zw.Reset(w)
		return zw
	}
	zw, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
	return zw
}

func putGzipWriter(zw *gzip.Writer) {
	zw.Reset(io.Discard) // drop the reference to the batch's buffer
	select {
	case gzipKept <- zw:
	default:
		gzipWriters.Put(zw)
	}
}

// post sends one request within the attempt timeout and reads up to 64 KiB
// of the answer.
func (h *HTTP) post(ctx context.Context, u, contentType string, body []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", u, err)
	}
	req.Header.Set("Content-Type", contentType)
	if h.gzip && contentType == "application/x-ndjson" {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if h.userAgent != "" {
		req.Header.Set("User-Agent", h.userAgent)
	}
	if h.token != nil {
		tok, err := h.token.get()
		if err != nil {
			return nil, nil, fmt.Errorf("token_file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: reading the answer: %w", u, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // so the connection can be reused
	return resp, data, nil
}

// unwrapURLError drops the url.Error wrapper, whose message repeats the
// method and URL that ours already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// unreachable reports whether a request failed without reaching the
// receiver's HTTP server, so it says nothing about the batch and is cheap
// to retry soon: refused or reset, no route, DNS, a dial or TLS handshake
// that timed out. A timeout waiting for the answer is not: the receiver
// may be working on it.
func unreachable(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	// net/http's handshake timeout has no exported type.
	return strings.Contains(err.Error(), "TLS handshake timeout")
}

// classify maps the receiver's answer to an outcome, per the wire
// contract's status table.
func classify(resp *http.Response, body []byte, sent, lines int) Result {
	status := resp.StatusCode
	switch {
	case status == http.StatusOK:
		var c Counts
		if err := json.Unmarshal(body, &c); err != nil {
			return Result{Outcome: Retry, Err: fmt.Errorf("200 with a body that is not the receiver's answer (a proxy or captive portal?): %s", snippet(body))}
		}
		if c.Accepted+c.Duplicates+c.Conflicts != sent {
			return Result{Outcome: Retry, Err: fmt.Errorf("200 accounts for %d readings (accepted %d, duplicates %d, conflicts %d), not the %d sent", c.Accepted+c.Duplicates+c.Conflicts, c.Accepted, c.Duplicates, c.Conflicts, sent)}
		}
		return Result{Outcome: Accepted, Counts: c}
	case status == http.StatusBadRequest, status == http.StatusForbidden, status == http.StatusUnsupportedMediaType:
		e, ok := receiverError(resp, body)
		if !ok {
			// Not the receiver's judgment of the batch: a proxy, firewall or
			// load balancer in the way. Nothing is dead-lettered for it.
			return Result{Outcome: Retry, Misconfigured: true, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
				Err: fmt.Errorf("%s that is not the receiver's answer (Content-Type %q; a proxy or firewall in the way?): %s",
					resp.Status, resp.Header.Get("Content-Type"), snippet(body))}
		}
		if status != http.StatusBadRequest {
			return Result{Outcome: Rejected, Err: fmt.Errorf("%s: %s", resp.Status, e.Error)}
		}
		if e.Line < 0 || e.Line > lines {
			e.Line = 0 // names no line of ours: the batch as a whole
		}
		return Result{Outcome: Rejected, Line: e.Line, Err: fmt.Errorf("400 bad request: %s", e.Error)}
	case status == http.StatusRequestEntityTooLarge:
		return Result{Outcome: TooLarge, Err: fmt.Errorf("%s", resp.Status)}
	case status == http.StatusUnauthorized:
		return Result{Outcome: Retry, Misconfigured: true, Err: fmt.Errorf("401 unauthorized: the receiver does not know this device's token (token_file, or 'outpost-receiver device add')")}
	case status == http.StatusNotFound:
		return Result{Outcome: Retry, Misconfigured: true, Err: fmt.Errorf("404 not found: is uplink.http.url the receiver's base URL? (%s)", resp.Request.URL)}
	case status >= 300 && status < 400:
		return Result{Outcome: Retry, Misconfigured: status == http.StatusMovedPermanently || status == http.StatusPermanentRedirect,
			Err: fmt.Errorf("%s to %q, not followed (a captive portal or proxy?)", resp.Status, resp.Header.Get("Location"))}
	default: // 429, 5xx and anything else: nothing is known to be stored
		return Result{Outcome: Retry, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), Err: fmt.Errorf("%s: %s", resp.Status, snippet(body))}
	}
}

// receiverErrorBody is the receiver's error answer (wire contract).
type receiverErrorBody struct {
	Error string `json:"error"`
	Line  int    `json:"line"`
}

// receiverError decodes the receiver's own error answer: Content-Type
// application/json and a JSON object with a non-empty "error". Only such
// an answer to a 400, 403 or 415 is a verdict on the batch; a proxy's HTML
// page with the same status is not.
func receiverError(resp *http.Response, body []byte) (receiverErrorBody, bool) {
	var e receiverErrorBody
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return e, false
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		return e, false
	}
	return e, true
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// snippet is the start of a body, on one line, for an error message.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// tokenFile caches a secret read from a file, reading it again when the
// file changes.
type tokenFile struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	value   string
}

func (t *tokenFile) get() (string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.value != "" && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return t.value, nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s: want one token on one line", t.path)
	}
	t.value, t.modTime, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}
