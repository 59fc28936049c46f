package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/outpost-iot/outpost/daemon/config"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
)

// SpoolClient runs the spool commands on the running daemon through its
// status socket or, when no daemon answers, on the spool file itself.
type SpoolClient struct {
	cfg    *config.Config
	socket *http.Client // set when the daemon answers
	sp     *spool.Spool // set when the file was opened here
}

func socketClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
}

// OpenSpoolClient finds the daemon, or opens the spool file.
func OpenSpoolClient(ctx context.Context, cfg *config.Config) (*SpoolClient, error) {
	c := &SpoolClient{cfg: cfg}
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, _, err := FetchStatus(pingCtx, cfg.Status.Socket); err == nil {
		c.socket = socketClient(cfg.Status.Socket)
		return c, nil
	}
	if _, err := os.Stat(cfg.Spool.Path); err != nil {
		return nil, fmt.Errorf("no daemon answers on %s and there is no spool at %s: %w", cfg.Status.Socket, cfg.Spool.Path, err)
	}
	sp, err := spool.Open(spool.Options{
		Path: cfg.Spool.Path, Device: cfg.Device, CommitInterval: time.Second,
		MaxBytes: int64(cfg.Spool.MaxBytes), MaxAge: cfg.Spool.MaxAge, LockTimeout: 2 * time.Second,
	})
	if err != nil {
		if errors.Is(err, spool.ErrLocked) {
			return nil, fmt.Errorf("%w (a daemon holds the spool but does not answer on %s)", err, cfg.Status.Socket)
		}
		return nil, err
	}
	c.sp = sp
	return c, nil
}

// Via says where the commands run: "daemon" or the spool file's path.
func (c *SpoolClient) Via() string {
	if c.socket != nil {
		return "daemon"
	}
	return c.cfg.Spool.Path
}

// Close commits what the commands changed, when the file was opened here.
func (c *SpoolClient) Close(ctx context.Context) error {
	if c.sp != nil {
		return c.sp.Close(ctx)
	}
	return nil
}

// call sends one request to the daemon and decodes a JSON answer into out
// (or copies it to w when out is nil).
func (c *SpoolClient) call(ctx context.Context, method, path string, q url.Values, body io.Reader, out any, w io.Writer) error {
	u := "http://outpost" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	resp, err := c.socket.Do(req)
	if err != nil {
		return fmt.Errorf("daemon: %w", unwrapOpError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return errors.New(e.Error)
	}
	if out == nil {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Stats is `outpost spool stats`.
func (c *SpoolClient) Stats(ctx context.Context) (SpoolStatus, error) {
	if c.sp != nil {
		return spoolStatus(c.sp)
	}
	var st SpoolStatus
	return st, c.call(ctx, http.MethodGet, "/v1/spool/stats", nil, nil, &st, nil)
}

// Export is `outpost spool export` (all, with dropped ranges) and `peek`
// (the oldest limit readings).
func (c *SpoolClient) Export(ctx context.Context, w io.Writer, limit int, withDropped bool) error {
	if c.sp != nil {
		return exportSpool(ctx, c.sp, w, limit, withDropped)
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}, "dropped": {strconv.FormatBool(withDropped)}}
	return c.call(ctx, http.MethodGet, "/v1/spool/export", q, nil, nil, w)
}

// Dead is `outpost spool dead`.
func (c *SpoolClient) Dead(ctx context.Context) ([]DeadLetterInfo, error) {
	if c.sp != nil {
		return deadLetters(c.sp)
	}
	var out []DeadLetterInfo
	return out, c.call(ctx, http.MethodGet, "/v1/spool/dead", nil, nil, &out, nil)
}

// Resend is `outpost spool resend STREAM FROM`; Purge, `… purge …`.
func (c *SpoolClient) Resend(ctx context.Context, stream string, from uint64) error {
	return c.deadOp(ctx, "resend", stream, from)
}

// Purge deletes a dead-lettered range; it is reported upstream as dropped.
func (c *SpoolClient) Purge(ctx context.Context, stream string, from uint64) error {
	return c.deadOp(ctx, "purge", stream, from)
}

func (c *SpoolClient) deadOp(ctx context.Context, op, stream string, from uint64) error {
	if c.sp != nil {
		return runDeadOp(ctx, c.sp, op, stream, from)
	}
	q := url.Values{"stream": {stream}, "from": {strconv.FormatUint(from, 10)}}
	return c.call(ctx, http.MethodPost, "/v1/spool/"+op, q, nil, &struct{}{}, nil)
}

func runDeadOp(ctx context.Context, sp *spool.Spool, op, stream string, from uint64) error {
	id, err := reading.ParseStreamID(stream)
	if err != nil {
		return fmt.Errorf("stream %q: %w", stream, err)
	}
	if op == "resend" {
		return sp.Resend(ctx, id, from)
	}
	return sp.Purge(ctx, id, from)
}

// Import is `outpost import FILE|-`.
func (c *SpoolClient) Import(ctx context.Context, r io.Reader) (ImportResult, error) {
	if c.sp != nil {
		return importReadings(ctx, c.sp, c.cfg.Device, r)
	}
	var res ImportResult
	return res, c.call(ctx, http.MethodPost, "/v1/import", nil, r, &res, nil)
}

// Salvage is `outpost spool salvage FILE`: what can be read of a
// quarantined file goes into the live spool, keeping stream and seq.
func (c *SpoolClient) Salvage(ctx context.Context, file string) (spool.SalvageReport, error) {
	if c.sp != nil {
		return c.sp.Salvage(ctx, file)
	}
	var rep spool.SalvageReport
	return rep, c.call(ctx, http.MethodPost, "/v1/spool/salvage", url.Values{"file": {file}}, nil, &rep, nil)
}

// spoolHandlers serves the spool commands on the status socket: the
// read-only ones to whoever may connect, those that change the spool to
// root and the daemon's user only (onlyOwner).
func (d *Daemon) spoolHandlers(mux *http.ServeMux) {
	writeJSON := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/spool/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := spoolStatus(d.spool)
		writeJSON(w, st, err)
	})
	mux.HandleFunc("GET /v1/spool/export", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		withDropped, _ := strconv.ParseBool(r.URL.Query().Get("dropped"))
		w.Header().Set("Content-Type", "application/x-ndjson")
		if err := exportSpool(r.Context(), d.spool, w, limit, withDropped); err != nil {
			d.log.Warn("spool export ended early", "err", err)
		}
	})
	mux.HandleFunc("GET /v1/spool/dead", func(w http.ResponseWriter, r *http.Request) {
		dls, err := deadLetters(d.spool)
		writeJSON(w, dls, err)
	})
	for _, op := range []string{"resend", "purge"} {
		mux.HandleFunc("POST /v1/spool/"+op, d.onlyOwner(func(w http.ResponseWriter, r *http.Request) {
			from, err := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
			if err == nil {
				err = runDeadOp(r.Context(), d.spool, op, r.URL.Query().Get("stream"), from)
			}
			if err == nil {
				d.log.Info("dead letters "+op, "stream", r.URL.Query().Get("stream"), "from", from)
			}
			writeJSON(w, struct{}{}, err)
		}))
	}
	mux.HandleFunc("POST /v1/spool/salvage", d.onlyOwner(func(w http.ResponseWriter, r *http.Request) {
		rep, err := d.spool.Salvage(r.Context(), r.URL.Query().Get("file"))
		writeJSON(w, rep, err)
	}))
	mux.HandleFunc("POST /v1/import", d.onlyOwner(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		device := d.cfg.Device
		d.mu.Unlock()
		res, err := importReadings(r.Context(), d.spool, device, r.Body)
		if err == nil {
			d.log.Info("readings imported", "imported", res.Imported, "bad_lines", len(res.Errors))
		}
		writeJSON(w, res, err)
	}))
}
