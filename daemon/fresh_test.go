package daemon

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
	"github.com/outpost-iot/outpost/uplink"
)

// TestFreshReadingsNotStarved: with a 20 000-reading backlog draining at
// a rate-limited 2000 readings/s (10s of work), a reading sampled now
// reaches the receiver within seconds, long before the backlog is gone.
func TestFreshReadingsNotStarved(t *testing.T) {
	sp, err := spool.Open(spool.Options{Path: filepath.Join(t.TempDir(), "spool.db"), Device: "pi-07", CommitInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close(context.Background())
	t0 := time.Now().Add(-time.Hour)
	for i := range 20000 {
		if _, err := sp.Append(context.Background(), reading.Reading{Sensor: "backlog", Value: float64(i), Time: t0.Add(time.Duration(i) * time.Millisecond)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	received, freshAt := 0, time.Time{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		dec := reading.NewDecoder(zr, reading.Limits{})
		n := 0
		for {
			var l reading.Line
			if err := dec.Decode(&l); err == io.EOF {
				break
			} else if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			n++
			if l.Reading.Sensor == "fresh" {
				mu.Lock()
				freshAt = time.Now()
				mu.Unlock()
			}
		}
		mu.Lock()
		received += n
		mu.Unlock()
		fmt.Fprintf(w, `{"accepted":%d,"duplicates":0,"conflicts":0}`, n)
	}))
	defer srv.Close()
	h, err := uplink.NewHTTP(uplink.HTTPOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	d := &uplink.Drainer{Outbox: sp, Sender: h, MaxReadings: 200, InFlight: 2, RateLimit: 2000, Idle: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	time.Sleep(time.Second)
	sampled := time.Now()
	if _, err := sp.Append(context.Background(), reading.Reading{Sensor: "fresh", Value: 1, Time: sampled}, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		at, got := freshAt, received
		mu.Unlock()
		if !at.IsZero() {
			if got >= 20000 {
				t.Fatalf("the fresh reading arrived only after the whole backlog (%d readings)", got)
			}
			t.Logf("fresh reading delivered %v after it was sampled, with %d of 20000 backlog readings delivered", at.Sub(sampled).Round(time.Millisecond), got)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("a reading sampled now was not delivered within 5s while the backlog drained")
}
