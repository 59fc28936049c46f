package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/receiver"
	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/uplink"
)

// statusReceiver is the real receiver (SQLite) with device pi-07, behind
// a recorder of the heartbeat bodies it was sent.
func statusReceiver(t *testing.T) (*uplink.HTTP, func() [][]byte) {
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
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := receiver.NewServer(st, receiver.Options{}).Handler()
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s, err := uplink.NewHTTP(uplink.HTTPOptions{URL: srv.URL, TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, func() [][]byte { mu.Lock(); defer mu.Unlock(); return bodies }
}

// bigStatus has n dead-letter ranges over three streams: a device whose
// every other reading was rejected.
func bigStatus(n int) Status {
	st := Status{State: "online", Device: "pi-07", Sensors: nil, DeadLetterRanges: []StreamRanges{}}
	for i := range n {
		k := i % 3
		if len(st.DeadLetterRanges) <= k {
			st.DeadLetterRanges = append(st.DeadLetterRanges, StreamRanges{Stream: fmt.Sprintf("%016x", 0xabc0+k)})
		}
		seq := uint64(1_000_000_000 + 2*i)
		st.DeadLetterRanges[k].Ranges = append(st.DeadLetterRanges[k].Ranges, [2]uint64{seq, seq})
	}
	return st
}

// A heartbeat too big for the receiver is trimmed to fit, says so, and is
// taken; on main it was refused (413) at every beat, forever.
func TestHeartbeatTrimmedToFit(t *testing.T) {
	s, bodies := statusReceiver(t)
	for _, n := range []int{0, 10, 999, 1000, 1001, 5000, 20000} {
		body, err := heartbeat(bigStatus(n), maxHeartbeatBytes)
		if err != nil {
			t.Fatalf("%d ranges: %v", n, err)
		}
		if err := s.SendStatus(context.Background(), body); err != nil {
			t.Fatalf("%d ranges: the receiver refused the heartbeat (%d bytes): %v", n, len(body), err)
		}
		var got Status
		if err := json.Unmarshal(bodies()[len(bodies())-1], &got); err != nil {
			t.Fatal(err)
		}
		kept := 0
		for _, sr := range got.DeadLetterRanges {
			kept += len(sr.Ranges)
		}
		if kept+got.DeadLetterRangesTrimmed != n || kept == 0 && n > 0 || kept > maxHeartbeatRanges {
			t.Errorf("%d ranges: heartbeat kept %d, says %d trimmed; want all accounted for, some kept, at most %d", n, kept, got.DeadLetterRangesTrimmed, maxHeartbeatRanges)
		}
		if n <= maxHeartbeatRanges && got.DeadLetterRangesTrimmed != 0 {
			t.Errorf("%d ranges: %d trimmed; want none (it fits)", n, got.DeadLetterRangesTrimmed)
		}
	}
	// The receiver's refusal of one too big says which limit it hit.
	full, err := json.Marshal(bigStatus(20000))
	if err != nil {
		t.Fatal(err)
	}
	err = s.SendStatus(context.Background(), full)
	if err == nil || !strings.Contains(err.Error(), "413") || !strings.Contains(err.Error(), "heartbeat limit of 65536 bytes") {
		t.Errorf("untrimmed %d-byte heartbeat: %v; want 413 naming the heartbeat limit", len(full), err)
	}
}
