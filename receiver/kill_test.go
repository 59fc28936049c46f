package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver/postgres"
	"github.com/outpost-iot/outpost/receiver/store"
)

// TestPostgresKilledMidIngest kills Postgres while a device sends batches:
// the receiver answers 503 with Retry-After (never another 5xx), stores no
// batch in part, and once Postgres is back every batch ends up stored
// exactly once.
func TestPostgresKilledMidIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (skipped with -short)")
	}
	pg := testserver.StartPostgres(t) // fsync on: a crash test
	url := pg.CreateDatabase(t, "killed")
	st, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	srv := newTestServer(t, st)

	const batches, size = 40, 200
	type outcome struct {
		batch  int
		status int
		res    store.Result
	}
	progress := make(chan outcome, batches*100)
	failed := make(chan struct{})
	resume := make(chan struct{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	go func() { // the device: sends each batch until it gets a 200
		defer close(progress)
		sawFailure := false
		for i := 0; i < batches; i++ {
			body := lines(i*size+1, (i+1)*size)
			for ctx.Err() == nil {
				r, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/readings", strings.NewReader(body))
				r.Header.Set("Authorization", "Bearer "+tokPi07)
				r.Header.Set("Content-Type", "application/x-ndjson")
				resp, err := srv.Client().Do(r)
				if err != nil {
					t.Errorf("batch %d: %v", i, err)
					return
				}
				var res store.Result
				json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
				if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
					resp.StatusCode = 599 // reported as wrong below
				}
				progress <- outcome{i, resp.StatusCode, res}
				if resp.StatusCode == 200 {
					break
				}
				if !sawFailure {
					sawFailure = true
					close(failed)
					select {
					case <-resume:
					case <-ctx.Done():
						return
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()

	// Let a few batches through, then kill Postgres mid-stream.
	perBatch := map[int]store.Result{}
	for n := 0; n < 5; {
		o, ok := <-progress
		if !ok {
			t.Fatal("sender stopped early")
		}
		if o.status == 200 {
			perBatch[o.batch] = o.res
			n++
		}
	}
	pg.Kill()
	select {
	case <-failed:
	case <-ctx.Done():
		t.Fatal("no request failed while Postgres was down")
	}
	pg.Start()

	// Before any retry: every batch is stored whole or not at all.
	counts := map[int]int{}
	err = st.Readings(ctx, store.Query{Device: "pi-07"}, func(s *store.Stored) error {
		counts[int(s.Seq-1)/size]++
		return nil
	})
	for err != nil && ctx.Err() == nil { // the pool may hand out a dead connection first
		time.Sleep(100 * time.Millisecond)
		counts = map[int]int{}
		err = st.Readings(ctx, store.Query{Device: "pi-07"}, func(s *store.Stored) error {
			counts[int(s.Seq-1)/size]++
			return nil
		})
	}
	for b, n := range counts {
		if n != size {
			t.Errorf("after the crash, batch %d has %d of %d readings stored", b, n, size)
		}
	}
	close(resume)

	seen503 := 0
	for o := range progress {
		switch o.status {
		case 200:
			perBatch[o.batch] = o.res
		case 503:
			seen503++
		default:
			t.Errorf("batch %d: status %d; want 200 or 503 with Retry-After", o.batch, o.status)
		}
	}
	if seen503 == 0 {
		t.Error("no 503 while Postgres was down")
	}
	if len(perBatch) != batches {
		t.Fatalf("%d of %d batches answered 200", len(perBatch), batches)
	}
	for b, res := range perBatch {
		if res.Accepted+res.Duplicates != size || res.Conflicts != 0 {
			t.Errorf("batch %d: %+v; want %d accepted or duplicates", b, res, size)
		}
	}
	gaps, err := st.Gaps(ctx, "pi-07")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(gaps); got != fmt.Sprintf("[{9f3c2a71d04b88e1 %d [] [] [] []}]", batches*size) {
		t.Errorf("gaps after recovery = %s; want none up to %d", got, batches*size)
	}
	t.Logf("%d answers 503 while Postgres was down", seen503)
}
