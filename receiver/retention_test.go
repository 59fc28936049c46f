package receiver

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// countingDeletes records the batches retention asks for.
type countingDeletes struct {
	store.Store
	calls []int64
}

func (c *countingDeletes) DeleteReceivedBefore(ctx context.Context, t time.Time, limit int) (int64, error) {
	n, err := c.Store.DeleteReceivedBefore(ctx, t, limit)
	c.calls = append(c.calls, n)
	return n, err
}

// TestRetentionBatches: a retention pass deletes everything received
// before the cut, in batches of the limit (each its own transaction),
// and nothing received after it.
func TestRetentionBatches(t *testing.T) {
	t.Parallel()
	st := openSQLiteT(t)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(t.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		t.Fatal(err)
	}
	old := storetest.BatchOf(storetest.Readings("pi-07", testStream, 1, 25))
	old.ReceivedAt = time.Now().Add(-100 * 24 * time.Hour)
	if _, err := st.Ingest(t.Context(), "pi-07", old); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Ingest(t.Context(), "pi-07", storetest.BatchOf(storetest.Readings("pi-07", testStream, 26, 30))); err != nil {
		t.Fatal(err)
	}
	c := &countingDeletes{Store: st}
	n, err := deleteReceivedBefore(t.Context(), c, time.Now().Add(-90*24*time.Hour), 10)
	if err != nil || n != 25 {
		t.Errorf("deleteReceivedBefore() = %d, %v; want 25", n, err)
	}
	if len(c.calls) != 3 {
		t.Errorf("batches deleted: %v; want 3 of at most 10", c.calls)
	}
	if got := storetest.All(t, st, store.Query{Device: "pi-07"}); len(got) != 5 || got[0].Seq != 26 {
		t.Errorf("left %d readings; want seqs 26..30", len(got))
	}
}

func TestRetentionInterval(t *testing.T) {
	for keep, want := range map[time.Duration]time.Duration{
		time.Hour: 6 * time.Minute, 5 * time.Minute: time.Minute, 90 * 24 * time.Hour: time.Hour,
	} {
		if got := retentionInterval(keep); got != want {
			t.Errorf("retentionInterval(%v) = %v; want %v", keep, got, want)
		}
	}
}
