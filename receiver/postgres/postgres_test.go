package postgres

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// The conformance suite's readings and batches.
var (
	mk         = storetest.Readings
	batchOf    = storetest.BatchOf
	testStream = storetest.Stream
)

var (
	pgMu sync.Mutex
	pgN  int
)

func TestStorePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (skipped with -short)")
	}
	pg := testserver.StartPostgres(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		pgMu.Lock()
		pgN++
		name := "conf" + string(rune('a'+pgN%26)) + time.Now().Format("150405.000000")
		pgMu.Unlock()
		url := pg.CreateDatabase(t, filepath.Base(name))
		s, err := Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

// TestPostgresKeyProbePlan guards the plan of the duplicate check: one
// primary-key probe per key of the batch, never a scan of the device's
// readings (which would make ingest slower as the table grows).
func TestPostgresKeyProbePlan(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (skipped with -short)")
	}
	pg := testserver.StartPostgres(t)
	st, err := Open(t.Context(), pg.CreateDatabase(t, "plan"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 20; i++ {
		if _, err := st.Ingest(t.Context(), "pi-07", batchOf(mk("pi-07", testStream, i*500+1, i*500+500))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.pool.Exec(t.Context(), `ANALYZE readings`); err != nil {
		t.Fatal(err)
	}
	var streams, seqs []int64
	var idxs []int32
	for i := range 500 {
		sid := testStream
		streams, seqs, idxs = append(streams, int64(sid)), append(seqs, int64(20000+i)), append(idxs, int32(i))
	}
	rows, err := st.pool.Query(t.Context(), "EXPLAIN "+storedKeysSQL, "pi-07", streams, seqs, idxs)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, l)
	}
	rows.Close()
	p := strings.Join(plan, "\n")
	if !strings.Contains(p, "Index Scan using readings_pkey") || strings.Contains(p, "Seq Scan on readings") || strings.Contains(p, "Hash") {
		t.Errorf("plan of the duplicate check:\n%s\nwant a primary-key probe per key", p)
	}
	// A dense run of one stream: one range scan of the primary key.
	sid := testStream
	var rangePlan []string
	rows, err = st.pool.Query(t.Context(), "EXPLAIN "+storedRangeSQL, "pi-07", int64(sid), int64(4001), int64(4500))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		rangePlan = append(rangePlan, l)
	}
	rows.Close()
	p = strings.Join(rangePlan, "\n")
	if !strings.Contains(p, "readings_pkey") || strings.Contains(p, "Seq Scan on readings") {
		t.Errorf("plan of the range duplicate check:\n%s\nwant a range scan of the primary key", p)
	}
}
