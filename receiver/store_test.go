package receiver

import (
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
)

// The store conformance suite: every Store implementation must pass it.

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)

const testStream = reading.StreamID(0x9f3c2a71d04b88e1)

// mk returns readings seq from..to of one device and stream, one sensor
// per seq parity, a second apart.
func mk(device string, stream reading.StreamID, from, to uint64) []reading.Reading {
	var rs []reading.Reading
	for s := from; s <= to; s++ {
		rs = append(rs, reading.Reading{
			Device: device, Stream: stream, Seq: s,
			Sensor: []string{"t", "h"}[s%2], Value: float64(s) / 4, Unit: "C",
			Time: t0.Add(time.Duration(s) * time.Second),
		})
	}
	return rs
}

func batchOf(rs []reading.Reading, dropped ...reading.Dropped) *Batch {
	return &Batch{Readings: rs, Dropped: dropped, ReceivedAt: time.Now().UTC()}
}

type openFunc func(t *testing.T) Store

func openSQLiteT(t *testing.T) Store {
	t.Helper()
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestStoreSQLite(t *testing.T) {
	t.Parallel()
	runStoreSuite(t, openSQLiteT)
}

var (
	pgMu sync.Mutex
	pgN  int
)

func TestStorePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (skipped with -short)")
	}
	pg := testserver.StartPostgres(t)
	runStoreSuite(t, func(t *testing.T) Store {
		pgMu.Lock()
		pgN++
		name := "conf" + string(rune('a'+pgN%26)) + time.Now().Format("150405.000000")
		pgMu.Unlock()
		url := pg.CreateDatabase(t, filepath.Base(name))
		s, err := OpenPostgres(t.Context(), url)
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
	st, err := OpenPostgres(t.Context(), pg.CreateDatabase(t, "plan"))
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

func migrated(t *testing.T, open openFunc) Store {
	t.Helper()
	s := open(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate() error = %v", err)
	}
	if err := s.AddDevice(t.Context(), "pi-07", HashToken("tok-pi-07"), t0); err != nil {
		t.Fatalf("AddDevice() error = %v", err)
	}
	return s
}

func ingest(t *testing.T, s Store, b *Batch) Result {
	t.Helper()
	res, err := s.Ingest(t.Context(), "pi-07", b)
	if err != nil {
		t.Fatalf("Ingest() error = %v", err)
	}
	if (res.Conflicts > 0) != (res.ConflictSeq > 0) {
		t.Errorf("Ingest() = %+v: the first conflict is named iff there are conflicts", res)
	}
	res.ConflictStream, res.ConflictSeq = 0, 0 // compared with counts only
	return res
}

func all(t *testing.T, s Store, q Query) []Stored {
	t.Helper()
	var out []Stored
	if err := s.Readings(t.Context(), q, func(st *Stored) error { out = append(out, *st); return nil }); err != nil {
		t.Fatalf("Readings(%+v) error = %v", q, err)
	}
	return out
}

func runStoreSuite(t *testing.T, open openFunc) {
	t.Run("Migrate", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if err := s.Ready(t.Context()); !errors.Is(err, ErrNotMigrated) {
			t.Errorf("Ready() before Migrate = %v; want ErrNotMigrated", err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent Migrate() error = %v", err)
		}
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("second Migrate() error = %v", err)
		}
		if err := s.Ready(t.Context()); err != nil {
			t.Errorf("Ready() = %v; want nil", err)
		}
	})
	t.Run("Devices", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		ctx := t.Context()
		if err := s.AddDevice(ctx, "pi-07", HashToken("other"), t0); !errors.Is(err, ErrDeviceExists) {
			t.Errorf("AddDevice(existing) = %v; want ErrDeviceExists", err)
		}
		if id, err := s.Authenticate(ctx, HashToken("tok-pi-07")); err != nil || id != "pi-07" {
			t.Errorf("Authenticate() = %q, %v; want pi-07", id, err)
		}
		if _, err := s.Authenticate(ctx, HashToken("nope")); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("Authenticate(unknown) = %v; want ErrUnknownToken", err)
		}
		if err := s.RevokeDevice(ctx, "pi-07", t0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, HashToken("tok-pi-07")); !errors.Is(err, ErrRevoked) {
			t.Errorf("Authenticate(revoked) = %v; want ErrRevoked", err)
		}
		if err := s.RevokeDevice(ctx, "nobody", t0); !errors.Is(err, ErrUnknownDevice) {
			t.Errorf("RevokeDevice(unknown) = %v; want ErrUnknownDevice", err)
		}
		status := []byte(`{"device":"pi-07","uptime_s":5}`)
		if err := s.SaveStatus(ctx, "pi-07", status, t0); err != nil {
			t.Fatal(err)
		}
		ds, err := s.Devices(ctx)
		if err != nil || len(ds) != 1 {
			t.Fatalf("Devices() = %v, %v; want one", ds, err)
		}
		d := ds[0]
		if d.ID != "pi-07" || d.Revoked == nil || d.LastSeen == nil || !d.LastSeen.Equal(t0.Truncate(time.Microsecond)) || len(d.LastStatus) == 0 {
			t.Errorf("Devices()[0] = %+v", d)
		}
	})
	t.Run("DuplicatesAndPartial", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		if got, want := ingest(t, s, batchOf(mk("pi-07", testStream, 1, 10))), (Result{Accepted: 10}); got != want {
			t.Errorf("first batch = %+v; want %+v", got, want)
		}
		if got, want := ingest(t, s, batchOf(mk("pi-07", testStream, 1, 10))), (Result{Duplicates: 10}); got != want {
			t.Errorf("same batch again = %+v; want %+v", got, want)
		}
		if got, want := ingest(t, s, batchOf(mk("pi-07", testStream, 6, 15))), (Result{Accepted: 5, Duplicates: 5}); got != want {
			t.Errorf("half-new batch = %+v; want %+v", got, want)
		}
		// Within one batch: a repeated line is a duplicate, a changed one a conflict.
		rs := mk("pi-07", testStream, 16, 17)
		rs = append(rs, rs[0])
		c := rs[1]
		c.Value = 99
		rs = append(rs, c)
		if got, want := ingest(t, s, batchOf(rs)), (Result{Accepted: 2, Duplicates: 1, Conflicts: 1}); got != want {
			t.Errorf("batch repeating itself = %+v; want %+v", got, want)
		}
		if n := len(all(t, s, Query{Device: "pi-07"})); n != 17 {
			t.Errorf("stored %d readings; want 17", n)
		}
	})
	t.Run("ConflictsAndCorrection", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		rs := mk("pi-07", testStream, 1, 4)
		rs[3].Unsynced = true
		rs[3].Time = time.Date(1970, 1, 1, 0, 5, 0, 0, time.UTC)
		ingest(t, s, batchOf(rs))

		// Microsecond precision decides: nanoseconds below it do not make a conflict.
		dup := slices.Clone(rs[:1])
		dup[0].Time = dup[0].Time.Truncate(time.Microsecond)
		if got, want := ingest(t, s, batchOf(dup)), (Result{Duplicates: 1}); got != want {
			t.Errorf("resend truncated to µs = %+v; want %+v", got, want)
		}
		bad := slices.Clone(rs[:3])
		bad[0].Value = math.Copysign(0, -1) + bad[0].Value + 1e-9 // other bits
		bad[1].Unit = "F"
		bad[2].Time = bad[2].Time.Add(time.Microsecond)
		if got, want := ingest(t, s, batchOf(bad)), (Result{Conflicts: 3}); got != want {
			t.Errorf("changed resend = %+v; want %+v", got, want)
		}
		fixed := slices.Clone(rs[3:4])
		fixed[0].Unsynced = false
		fixed[0].Time = t0.Add(4 * time.Second)
		if got, want := ingest(t, s, batchOf(fixed)), (Result{Accepted: 1, Corrected: 1}); got != want {
			t.Errorf("corrected unsynced = %+v; want %+v", got, want)
		}
		got := all(t, s, Query{Device: "pi-07"})
		if len(got) != 4 {
			t.Fatalf("stored %d readings; want 4", len(got))
		}
		for i, st := range got {
			want := rs[i]
			if i == 3 {
				want = fixed[0]
			}
			if st.Seq != want.Seq || st.Value != want.Value || st.Unit != want.Unit || !st.Time.Equal(want.Time.Truncate(time.Microsecond)) || st.Unsynced != want.Unsynced {
				t.Errorf("stored[%d] = %+v; want %+v (the stored reading stays on conflict)", i, st.Reading, want)
			}
		}
		// A resend of the original unsynced reading is now a conflict.
		if got, want := ingest(t, s, batchOf(rs[3:4])), (Result{Conflicts: 1}); got != want {
			t.Errorf("old unsynced resend = %+v; want %+v", got, want)
		}
	})
	t.Run("ConflictAccounting", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		rs := mk("pi-07", testStream, 1, 6)
		rs[5].Unsynced, rs[5].Time = true, time.Date(1970, 1, 1, 0, 0, 6, 0, time.UTC)
		ingest(t, s, batchOf(rs))
		changed := slices.Clone(rs[:2])
		changed[0].Value, changed[1].Unit = 99, "F"
		res, err := s.Ingest(t.Context(), "pi-07", batchOf(changed))
		if err != nil {
			t.Fatal(err)
		}
		if res.Conflicts != 2 || res.ConflictStream != testStream || res.ConflictSeq != 1 {
			t.Errorf("Ingest(two changed readings) = %+v; want 2 conflicts, the first at %v seq 1", res, testStream)
		}
		fixed := rs[5]
		fixed.Unsynced, fixed.Time = false, t0.Add(6*time.Second)
		if got, want := ingest(t, s, batchOf([]reading.Reading{fixed})), (Result{Accepted: 1, Corrected: 1}); got != want {
			t.Errorf("correction = %+v; want %+v", got, want)
		}
		// The device's heartbeat lists seqs 8–9 as dead-lettered: not missing.
		ingest(t, s, batchOf(mk("pi-07", testStream, 10, 10)))
		status := `{"device":"pi-07","dead_letter_ranges":[{"stream":"` + testStream.String() + `","ranges":[[8,9]]},{"stream":"bogus","ranges":[[1,2]]}]}`
		if err := s.SaveStatus(t.Context(), "pi-07", []byte(status), t0); err != nil {
			t.Fatal(err)
		}
		// A status without the ranges (the MQTT last will) keeps them.
		if err := s.SaveStatus(t.Context(), "pi-07", []byte(`{"state":"offline"}`), t0); err != nil {
			t.Fatal(err)
		}
		ds, err := s.Devices(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantSum := []StreamSummary{{Stream: testStream.String(), HighestSeq: 10, Received: 7, DeadLettered: 2, Missing: 1, Conflicts: 2, Corrected: 1}}
		if !equalJSON(t, ds[0].Streams, wantSum) {
			t.Errorf("Devices()[0].Streams = %+v; want %+v", ds[0].Streams, wantSum)
		}
		gaps, err := s.Gaps(t.Context(), "pi-07")
		if err != nil {
			t.Fatal(err)
		}
		if len(gaps) != 1 || !equalJSON(t, gaps[0].Missing, [][2]uint64{{7, 7}}) || !equalJSON(t, gaps[0].DeadLettered, [][2]uint64{{8, 9}}) {
			t.Fatalf("Gaps() = %+v; want seq 7 missing, 8–9 dead-lettered", gaps)
		}
		cs := gaps[0].Conflicts
		if len(cs) != 2 || cs[0].Seq != 2 || cs[1].Seq != 1 {
			t.Fatalf("Gaps().Conflicts = %+v; want seqs 2 then 1 (newest first)", cs)
		}
		for i, c := range cs {
			stored, got := rs[1-i], changed[1-i]
			if c.Stored == nil || c.Stored.Value != stored.Value || c.Stored.Unit != stored.Unit || !c.Stored.Timestamp.Equal(stored.Time.Truncate(time.Microsecond)) ||
				c.Received.Value != got.Value || c.Received.Unit != got.Unit || c.Received.Sensor != got.Sensor || c.ReceivedAt.IsZero() {
				t.Errorf("conflict of seq %d = %+v (stored %+v); want stored %+v, received %+v", c.Seq, c, c.Stored, stored, got)
			}
		}
		// A heartbeat with an empty list: nothing is dead-lettered any more.
		if err := s.SaveStatus(t.Context(), "pi-07", []byte(`{"device":"pi-07","dead_letter_ranges":[]}`), t0); err != nil {
			t.Fatal(err)
		}
		if gaps, err := s.Gaps(t.Context(), "pi-07"); err != nil || !equalJSON(t, gaps[0].Missing, [][2]uint64{{7, 9}}) || len(gaps[0].DeadLettered) != 0 {
			t.Errorf("Gaps() after an empty dead-letter list = %+v, %v; want 7–9 missing", gaps, err)
		}
		// A key repeated within one batch with other contents: the row
		// names the first occurrence, stored by the same batch.
		twice := mk("pi-07", testStream, 11, 11)
		twice = append(twice, twice[0])
		twice[1].Value = -1
		ingest(t, s, batchOf(twice))
		gaps, err = s.Gaps(t.Context(), "pi-07")
		if err != nil {
			t.Fatal(err)
		}
		if c := gaps[0].Conflicts[0]; c.Seq != 11 || c.Stored == nil || c.Stored.Value != twice[0].Value || c.Received.Value != -1 {
			t.Errorf("in-batch conflict = %+v (stored %+v); want seq 11 stored %v, received -1", c, c.Stored, twice[0].Value)
		}
	})
	t.Run("FieldsRoundTrip", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		r := reading.Reading{Device: "pi-07", Stream: reading.StreamID(math.MaxUint64), Seq: reading.MaxSeq,
			Sensor: "grün.temp", Value: -1.5e-300, Labels: map[string]string{"room": "a", "k": "v\"x"},
			Time: t0, Unsynced: true}
		ingest(t, s, batchOf([]reading.Reading{r}))
		got := all(t, s, Query{Device: "pi-07"})
		if len(got) != 1 {
			t.Fatalf("stored %d; want 1", len(got))
		}
		g := got[0]
		if g.Stream != r.Stream || g.Seq != r.Seq || g.Sensor != r.Sensor || g.Value != r.Value || g.Unit != "" ||
			!g.Time.Equal(t0.Truncate(time.Microsecond)) || !g.Unsynced || len(g.Labels) != 2 || g.Labels["k"] != "v\"x" || g.ReceivedAt.IsZero() {
			t.Errorf("round trip = %+v; want %+v", g, r)
		}
	})
	t.Run("GapsAndDropped", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		other := reading.StreamID(0x0123456789abcdef)
		rs := append(mk("pi-07", testStream, 1, 3), mk("pi-07", testStream, 6, 7)...)
		rs = append(rs, mk("pi-07", testStream, 10, 10)...)
		rs = append(rs, mk("pi-07", other, 2, 2)...)
		ingest(t, s, batchOf(rs, reading.Dropped{Device: "pi-07", Stream: testStream, From: 4, To: 4}))
		ingest(t, s, batchOf(nil, reading.Dropped{Device: "pi-07", Stream: testStream, From: 4, To: 4})) // reported twice
		gaps, err := s.Gaps(t.Context(), "pi-07")
		if err != nil {
			t.Fatal(err)
		}
		want := []StreamGaps{
			{Stream: other.String(), HighestSeq: 2, Missing: [][2]uint64{{1, 1}}, Dropped: [][2]uint64{}, DeadLettered: [][2]uint64{}, Conflicts: []Conflict{}},
			{Stream: testStream.String(), HighestSeq: 10, Missing: [][2]uint64{{5, 5}, {8, 9}}, Dropped: [][2]uint64{{4, 4}}, DeadLettered: [][2]uint64{}, Conflicts: []Conflict{}},
		}
		if !equalJSON(t, gaps, want) {
			t.Errorf("Gaps() = %+v; want %+v", gaps, want)
		}
		ds, err := s.Devices(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantSum := []StreamSummary{
			{Stream: testStream.String(), HighestSeq: 10, Received: 6, Dropped: 1, Missing: 3},
			{Stream: other.String(), HighestSeq: 2, Received: 1, Missing: 1},
		}
		if !equalJSON(t, ds[0].Streams, wantSum) {
			t.Errorf("Devices()[0].Streams = %+v; want %+v", ds[0].Streams, wantSum)
		}
	})
	t.Run("ConcurrentSameBatch", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		// Two replicas store the same batch at once: one stores it, the
		// other finds duplicates; no error, no second row.
		var wg sync.WaitGroup
		res := make([]Result, 4)
		errs := make([]error, 4)
		for i := range res {
			wg.Go(func() { res[i], errs[i] = s.Ingest(t.Context(), "pi-07", batchOf(mk("pi-07", testStream, 1, 300))) })
		}
		wg.Wait()
		var sum Result
		for i := range res {
			if errs[i] != nil {
				t.Fatalf("Ingest() error = %v", errs[i])
			}
			sum.Accepted += res[i].Accepted
			sum.Duplicates += res[i].Duplicates
			sum.Conflicts += res[i].Conflicts
		}
		if want := (Result{Accepted: 300, Duplicates: 900}); sum != want {
			t.Errorf("four concurrent copies of a batch: %+v in all; want %+v", sum, want)
		}
		ds, err := s.Devices(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := ds[0].Streams; len(got) != 1 || got[0].Received != 300 || got[0].Missing != 0 {
			t.Errorf("stream accounting = %+v; want 300 received, none missing", got)
		}
	})
	t.Run("Reject", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		if err := s.Reject(t.Context(), Rejected{Topic: "outpost/pi-07/readings", Device: "pi-07", Err: "line 1: bad", Line: 1,
			Payload: []byte("{"), ReceivedAt: t0}); err != nil {
			t.Errorf("Reject() error = %v", err)
		}
	})
	t.Run("ClockFlag", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		// Seqs 1–3 were taken before the device clock was synchronised and
		// sent so: they stay flagged. Seq 3 is then sent again corrected.
		rs := mk("pi-07", testStream, 1, 6)
		for i := range 3 {
			rs[i].Unsynced = true
			rs[i].Time = time.Unix(int64(10+i), 0).UTC()
		}
		ingest(t, s, batchOf(rs))
		seqs := func(c ClockFilter) []uint64 {
			var out []uint64
			for _, st := range all(t, s, Query{Device: "pi-07", Clock: c}) {
				out = append(out, st.Seq)
			}
			slices.Sort(out)
			return out
		}
		if got := seqs(ClockUnsynced); !slices.Equal(got, []uint64{1, 2, 3}) {
			t.Errorf("Readings(clock unsynced) seqs = %v; want [1 2 3]", got)
		}
		if got := seqs(ClockSynced); !slices.Equal(got, []uint64{4, 5, 6}) {
			t.Errorf("Readings(clock synced) seqs = %v; want [4 5 6]", got)
		}
		fixed := slices.Clone(rs[2:3])
		fixed[0].Unsynced, fixed[0].Time = false, t0.Add(3*time.Second)
		if got, want := ingest(t, s, batchOf(fixed)), (Result{Accepted: 1, Corrected: 1}); got != want {
			t.Errorf("corrected resend = %+v; want %+v", got, want)
		}
		if got := seqs(ClockUnsynced); !slices.Equal(got, []uint64{1, 2}) {
			t.Errorf("after the correction, Readings(clock unsynced) seqs = %v; want [1 2]", got)
		}
		if got := seqs(ClockAll); len(got) != 6 {
			t.Errorf("Readings(clock all) = %v; want 6 readings", got)
		}
		// The device's clock state is its last heartbeat's.
		for _, c := range []struct{ status, want string }{
			{`{"device":"pi-07","clock":"unsynced"}`, "unsynced"},
			{`{"device":"pi-07","clock":"synced"}`, "synced"},
			{`{"state":"offline"}`, ""},
		} {
			if err := s.SaveStatus(t.Context(), "pi-07", []byte(c.status), t0); err != nil {
				t.Fatal(err)
			}
			ds, err := s.Devices(t.Context())
			if err != nil || len(ds) != 1 || ds[0].Clock != c.want {
				t.Errorf("Devices() after heartbeat %s = %+v, %v; want clock %q", c.status, ds, err, c.want)
			}
		}
	})
	t.Run("Queries", func(t *testing.T) {
		t.Parallel()
		s := migrated(t, open)
		ingest(t, s, batchOf(mk("pi-07", testStream, 1, 10)))
		latest, err := s.Latest(t.Context(), "pi-07")
		if err != nil {
			t.Fatal(err)
		}
		if len(latest) != 2 || latest[0].Sensor != "h" || latest[0].Seq != 9 || latest[1].Sensor != "t" || latest[1].Seq != 10 {
			t.Errorf("Latest() = %+v; want h seq 9, t seq 10", latest)
		}
		got := all(t, s, Query{Device: "pi-07", Sensor: "t", From: t0.Add(4 * time.Second), To: t0.Add(8 * time.Second)})
		var seqs []uint64
		for _, g := range got {
			seqs = append(seqs, g.Seq)
		}
		if !slices.Equal(seqs, []uint64{4, 6}) {
			t.Errorf("Readings(sensor t, [4s, 8s)) seqs = %v; want [4 6]", seqs)
		}
		if got := all(t, s, Query{Device: "nobody"}); len(got) != 0 {
			t.Errorf("Readings(unknown device) = %d readings; want 0", len(got))
		}
	})
}
