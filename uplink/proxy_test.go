package uplink

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	recv "github.com/outpost-iot/outpost/receiver"
	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
)

// realReceiver is the receiver's own HTTP API on a SQLite store, with
// device pi-07 registered under the returned token file.
func realReceiver(t *testing.T) (http.Handler, string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "receiver.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const tok = "pi-07-token-0123456789abcdef0123456789abcdef"
	if err := st.AddDevice(ctx, "pi-07", store.HashToken(tok), time.Now()); err != nil {
		t.Fatal(err)
	}
	return recv.NewServer(st, recv.Options{}).Handler(), writeToken(t, tok)
}

// A proxy or firewall answering 403 with its own HTML page is no verdict
// on the batch: the drain retries it with backoff, says misconfigured,
// and dead-letters nothing; once the proxy lets it through, all of it is
// delivered. (On main every batch was dead-lettered at once.)
func TestDrainProxyForbiddenRetriedNotDeadLettered(t *testing.T) {
	rh, tokFile := realReceiver(t)
	var proxyBlocks atomic.Bool
	var blocked atomic.Int32
	proxyBlocks.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if proxyBlocks.Load() {
			blocked.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "<html><head><title>403 Forbidden</title></head><body><h1>403 Forbidden</h1><hr>nginx</body></html>\n")
			return
		}
		rh.ServeHTTP(w, r)
	}))
	defer srv.Close()

	o := newMemOutbox(6, nil)
	d := &Drainer{Outbox: o, Sender: newSender(t, srv.URL, HTTPOptions{TokenFile: tokFile}), MaxReadings: 1, InFlight: 2,
		Backoff: Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// Blocked: several answered, all retried, the status says why.
	deadline := time.Now().Add(30 * time.Second)
	for blocked.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := d.Status()
	if blocked.Load() < 6 || !st.Misconfigured || st.State != "misconfigured" || !strings.Contains(st.LastError, "not the receiver's") {
		t.Fatalf("after %d proxy 403s status = %+v; want misconfigured, naming a 403 that is not the receiver's", blocked.Load(), st)
	}
	o.mu.Lock()
	dead, acked := len(o.dead), len(o.acked)
	o.mu.Unlock()
	if dead != 0 || acked != 0 || st.DeadLettered != 0 {
		t.Fatalf("under a proxy's HTML 403: %d dead-lettered, %d acked (status %+v); want none of either", dead, acked, st)
	}

	// The proxy lets it through: everything is delivered, nothing lost.
	proxyBlocks.Store(false)
	for !o.settled() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	o.checkFates(t)
	if st := d.Status(); st.Misconfigured || st.DeadLettered != 0 {
		t.Errorf("after delivery status = %+v; want no longer misconfigured, nothing dead-lettered", st)
	}
}

// The receiver's own JSON 403 (a line naming another device) still
// dead-letters: that is its verdict on the batch.
func TestDrainReceiverForbiddenStillDeadLetters(t *testing.T) {
	rh, tokFile := realReceiver(t)
	srv := httptest.NewServer(rh)
	defer srv.Close()
	o := newMemOutbox(3, func(r *reading.Reading) {
		if r.Seq == 2 {
			r.Device = "pi-08" // not the token's device
		}
	})
	d := &Drainer{Outbox: o, Sender: newSender(t, srv.URL, HTTPOptions{TokenFile: tokFile}), MaxReadings: 1, InFlight: 1}
	drainUntilSettled(t, o, d)
	o.checkFates(t, 2)
	if why := o.dead[2]; !strings.Contains(why, "403") || !strings.Contains(why, "pi-08") {
		t.Errorf("dead-letter reason = %q; want the receiver's 403 naming pi-08", why)
	}
}
