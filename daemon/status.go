package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-iot/outpost/daemon/sampler"
)

// Status is the daemon's state, as `outpost status --json` prints it and
// as the heartbeat sends it upstream (DESIGN: POST /v1/status and the
// retained MQTT status).
type Status struct {
	State            string                 `json:"state"` // online
	Device           string                 `json:"device"`
	Version          string                 `json:"version"`
	BootID           string                 `json:"boot_id"`
	UptimeS          int64                  `json:"uptime_s"`
	Clock            string                 `json:"clock"` // synced or unsynced
	Spool            SpoolStatus            `json:"spool"`
	Uplink           UplinkStatus           `json:"uplink"`
	Sensors          []sampler.SensorStatus `json:"sensors"`
	DeadLetterRanges []StreamRanges         `json:"dead_letter_ranges"`
	// DeadLetterRangesTrimmed is how many dead-letter ranges a heartbeat
	// left out to fit the receiver's limit (see heartbeat).
	DeadLetterRangesTrimmed int `json:"dead_letter_ranges_trimmed,omitempty"`
}

// SpoolStatus is the spool part of Status.
type SpoolStatus struct {
	Path           string `json:"path"`
	Stream         string `json:"stream"`
	Seq            uint64 `json:"seq"` // the live stream's committed seq high-water mark
	Readings       uint64 `json:"readings"`
	Bytes          uint64 `json:"bytes"`
	FileBytes      int64  `json:"file_bytes"`
	OldestUnsentS  int64  `json:"oldest_unsent_s"`
	Dropped        uint64 `json:"dropped"`
	DeadLetter     uint64 `json:"dead_letter"`
	Quarantined    uint64 `json:"quarantined"`
	CommitFailing  bool   `json:"commit_failing,omitempty"`
	LastCommitFail string `json:"last_commit_error,omitempty"`
	DiskFull       bool   `json:"disk_full,omitempty"` // the policy makes room in the file
	Rejected       uint64 `json:"rejected,omitempty"`  // readings refused (reject_new) since start
}

// UplinkStatus is the uplink part of Status.
type UplinkStatus struct {
	Kind          string     `json:"kind"` // http, mqtt or none
	State         string     `json:"state"`
	LastSuccess   *time.Time `json:"last_success"`
	LastError     string     `json:"last_error"`
	Failures      int        `json:"failures,omitempty"`
	Misconfigured bool       `json:"misconfigured,omitempty"`
	Sent          uint64     `json:"sent"`
}

// StreamRanges lists seq ranges of one stream.
type StreamRanges struct {
	Stream string      `json:"stream"`
	Ranges [][2]uint64 `json:"ranges"`
}

// Status gathers the current state.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	cfg, smp, dr := d.cfg, d.smp, d.drain
	d.mu.Unlock()
	st := Status{
		State:            "online",
		Device:           cfg.Device,
		Version:          d.opts.Version,
		BootID:           d.boot.String(),
		UptimeS:          int64(time.Since(d.started).Seconds()),
		Clock:            d.clock.String(),
		Sensors:          []sampler.SensorStatus{},
		DeadLetterRanges: []StreamRanges{},
		Uplink:           UplinkStatus{Kind: "none", State: "not configured"},
	}
	if sp, err := spoolStatus(d.spool); err == nil {
		st.Spool = sp
	}
	if dls, err := d.spool.DeadLetters(); err == nil {
		byStream := map[string]int{}
		for _, dl := range dls {
			k := dl.Stream.String()
			i, ok := byStream[k]
			if !ok {
				i = len(st.DeadLetterRanges)
				byStream[k] = i
				st.DeadLetterRanges = append(st.DeadLetterRanges, StreamRanges{Stream: k})
			}
			st.DeadLetterRanges[i].Ranges = append(st.DeadLetterRanges[i].Ranges, [2]uint64{dl.From, dl.To})
		}
	}
	if smp != nil {
		st.Sensors = smp.Status()
	}
	if dr != nil {
		u := dr.Status()
		st.Uplink = UplinkStatus{Kind: cfg.Uplink.Kind, State: u.State, LastError: u.LastError,
			Failures: u.Failures, Misconfigured: u.Misconfigured, Sent: u.Sent}
		if !u.LastSuccess.IsZero() {
			t := u.LastSuccess.UTC()
			st.Uplink.LastSuccess = &t
		}
	}
	return st
}

// serveStatus answers GET /v1/status on a unix socket that root and the
// outpost group may use (the runtime directory is 0750 root:outpost).
func (d *Daemon) serveStatus(path string) (io.Closer, error) {
	if path == "" {
		return nil, errors.New("status.socket is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	// A socket left by a daemon that was killed would block the listen.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use: is another outpost daemon running?", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(d.Status())
	})
	d.spoolHandlers(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ConnContext: peerContext}
	go srv.Serve(ln)
	return srv, nil
}

// heartbeats sends the status upstream every interval, and once at start.
func (d *Daemon) heartbeats(ctx context.Context, s sender, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		body, err := heartbeat(d.Status(), maxHeartbeatBytes)
		if err != nil && !failing {
			// Not the link's fault and it will not pass by itself.
			d.log.Warn("heartbeat not sent", "err", err)
		} else if err == nil {
			err = s.SendStatus(ctx, body)
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			d.log.Debug("heartbeat not delivered", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
