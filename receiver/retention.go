package receiver

import (
	"context"
	"log/slog"
	"time"
)

// retentionStore is what retention asks of the store.
type retentionStore interface {
	DeleteReceivedBefore(ctx context.Context, t time.Time, limit int) (int64, error)
}

// retentionBatch is how many readings one delete takes: each batch is a
// short transaction of its own, so ingest is never held behind a long one.
const retentionBatch = 1000

// retentionInterval is how often retention runs for keep: a tenth of it,
// between a minute and an hour.
func retentionInterval(keep time.Duration) time.Duration {
	return min(max(keep/10, time.Minute), time.Hour)
}

// runRetention deletes the readings received more than keep ago, at
// start and then every retentionInterval(keep), until ctx is done.
func runRetention(ctx context.Context, st retentionStore, keep time.Duration, log *slog.Logger) {
	t := time.NewTicker(retentionInterval(keep))
	defer t.Stop()
	for {
		cut := time.Now().Add(-keep)
		n, err := deleteReceivedBefore(ctx, st, cut, retentionBatch)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("retention: old readings not deleted, will retry", "deleted", n, "err", err)
		case n > 0:
			log.Info("retention: old readings deleted", "deleted", n, "received_before", cut.UTC().Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deleteReceivedBefore deletes every reading received before cut, batch
// readings per transaction, and returns how many it deleted.
func deleteReceivedBefore(ctx context.Context, st retentionStore, cut time.Time, batch int) (int64, error) {
	var total int64
	for {
		n, err := st.DeleteReceivedBefore(ctx, cut, batch)
		total += n
		if err != nil || n < int64(batch) {
			return total, err
		}
	}
}
