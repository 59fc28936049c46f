// Package storetest is the conformance suite of the receiver's stores:
// Run checks that a store.Store keeps each (device, stream, seq) once,
// tells duplicates from conflicts and clock corrections, accounts for
// gaps, drops and dead letters, and answers queries, exactly as every
// other store does. Each store's own tests run it (receiver/postgres,
// receiver/sqlite); its helpers make readings and batches for tests.
package storetest

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

// T0 is the device time of the suite's first reading.
var T0 = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)

// Stream is the suite's stream.
const Stream = reading.StreamID(0x9f3c2a71d04b88e1)

// Readings returns readings seq from..to of one device and stream, one
// sensor per seq parity, a second apart.
func Readings(device string, stream reading.StreamID, from, to uint64) []reading.Reading {
	var rs []reading.Reading
	for s := from; s <= to; s++ {
		rs = append(rs, reading.Reading{
			Device: device, Stream: stream, Seq: s,
			Sensor: []string{"t", "h"}[s%2], Value: float64(s) / 4, Unit: "C",
			Time: T0.Add(time.Duration(s) * time.Second),
		})
	}
	return rs
}

// BatchOf is a batch of rs and dropped, received now.
func BatchOf(rs []reading.Reading, dropped ...reading.Dropped) *store.Batch {
	return &store.Batch{Readings: rs, Dropped: dropped, ReceivedAt: time.Now().UTC()}
}

// Open returns a new, empty store that the test owns (its cleanup
// closes it).
type Open func(t *testing.T) store.Store

func migrated(t *testing.T, open Open) store.Store {
	t.Helper()
	s := open(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate() error = %v", err)
	}
	if err := s.AddDevice(t.Context(), "pi-07", store.HashToken("tok-pi-07"), T0); err != nil {
		t.Fatalf("AddDevice() error = %v", err)
	}
	return s
}

func ingest(t *testing.T, s store.Store, b *store.Batch) store.Result {
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

// All returns the readings of q in s.
func All(t *testing.T, s store.Store, q store.Query) []store.Stored {
	t.Helper()
	var out []store.Stored
	if err := s.Readings(t.Context(), q, func(st *store.Stored) error { out = append(out, *st); return nil }); err != nil {
		t.Fatalf("Readings(%+v) error = %v", q, err)
	}
	return out
}

// Run runs the conformance suite, as parallel subtests, each on a store
// of its own from open.
func Run(t *testing.T, open Open) {
	for _, c := range []struct {
		name string
		test func(*testing.T, Open)
	}{
		{"Migrate", testMigrate},
		{"Devices", testDevices},
		{"DuplicatesAndPartial", testDuplicatesAndPartial},
		{"ConflictsAndCorrection", testConflictsAndCorrection},
		{"ConflictAccounting", testConflictAccounting},
		{"ConflictCaps", testConflictCaps},
		{"FieldsRoundTrip", testFieldsRoundTrip},
		{"GapsAndDropped", testGapsAndDropped},
		{"ConcurrentSameBatch", testConcurrentSameBatch},
		{"Reject", testReject},
		{"ClockFlag", testClockFlag},
		{"Queries", testQueries},
		{"DeviceChecks", testDeviceChecks},
		{"Rotate", testRotate},
		{"Retention", testRetention},
		{"DeadLetterClamp", testDeadLetterClamp},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, open) })
	}
}

func testMigrate(t *testing.T, open Open) {
	t.Parallel()
	s := open(t)
	if err := s.Ready(t.Context()); !errors.Is(err, store.ErrNotMigrated) {
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
}

func testDevices(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	ctx := t.Context()
	if err := s.AddDevice(ctx, "pi-07", store.HashToken("other"), T0); !errors.Is(err, store.ErrDeviceExists) {
		t.Errorf("AddDevice(existing) = %v; want ErrDeviceExists", err)
	}
	if id, err := s.Authenticate(ctx, store.HashToken("tok-pi-07")); err != nil || id != "pi-07" {
		t.Errorf("Authenticate() = %q, %v; want pi-07", id, err)
	}
	if _, err := s.Authenticate(ctx, store.HashToken("nope")); !errors.Is(err, store.ErrUnknownToken) {
		t.Errorf("Authenticate(unknown) = %v; want ErrUnknownToken", err)
	}
	if err := s.RevokeDevice(ctx, "pi-07", T0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, store.HashToken("tok-pi-07")); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("Authenticate(revoked) = %v; want ErrRevoked", err)
	}
	if err := s.RevokeDevice(ctx, "nobody", T0); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("RevokeDevice(unknown) = %v; want ErrUnknownDevice", err)
	}
	status := []byte(`{"device":"pi-07","uptime_s":5}`)
	if err := s.SaveStatus(ctx, "pi-07", status, T0); err != nil {
		t.Fatal(err)
	}
	ds, err := s.Devices(ctx)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Devices() = %v, %v; want one", ds, err)
	}
	d := ds[0]
	if d.ID != "pi-07" || d.Revoked == nil || d.LastSeen == nil || !d.LastSeen.Equal(T0.Truncate(time.Microsecond)) || len(d.LastStatus) == 0 {
		t.Errorf("Devices()[0] = %+v", d)
	}
}

func testDuplicatesAndPartial(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	if got, want := ingest(t, s, BatchOf(Readings("pi-07", Stream, 1, 10))), (store.Result{Accepted: 10}); got != want {
		t.Errorf("first batch = %+v; want %+v", got, want)
	}
	if got, want := ingest(t, s, BatchOf(Readings("pi-07", Stream, 1, 10))), (store.Result{Duplicates: 10}); got != want {
		t.Errorf("same batch again = %+v; want %+v", got, want)
	}
	if got, want := ingest(t, s, BatchOf(Readings("pi-07", Stream, 6, 15))), (store.Result{Accepted: 5, Duplicates: 5}); got != want {
		t.Errorf("half-new batch = %+v; want %+v", got, want)
	}
	// Within one batch: a repeated line is a duplicate, a changed one a conflict.
	rs := Readings("pi-07", Stream, 16, 17)
	rs = append(rs, rs[0])
	c := rs[1]
	c.Value = 99
	rs = append(rs, c)
	if got, want := ingest(t, s, BatchOf(rs)), (store.Result{Accepted: 2, Duplicates: 1, Conflicts: 1}); got != want {
		t.Errorf("batch repeating itself = %+v; want %+v", got, want)
	}
	if n := len(All(t, s, store.Query{Device: "pi-07"})); n != 17 {
		t.Errorf("stored %d readings; want 17", n)
	}
}

func testConflictsAndCorrection(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	rs := Readings("pi-07", Stream, 1, 4)
	rs[3].Unsynced = true
	rs[3].Time = time.Date(1970, 1, 1, 0, 5, 0, 0, time.UTC)
	ingest(t, s, BatchOf(rs))

	// Microsecond precision decides: nanoseconds below it do not make a conflict.
	dup := slices.Clone(rs[:1])
	dup[0].Time = dup[0].Time.Truncate(time.Microsecond)
	if got, want := ingest(t, s, BatchOf(dup)), (store.Result{Duplicates: 1}); got != want {
		t.Errorf("resend truncated to µs = %+v; want %+v", got, want)
	}
	bad := slices.Clone(rs[:3])
	bad[0].Value = math.Copysign(0, -1) + bad[0].Value + 1e-9 // other bits
	bad[1].Unit = "F"
	bad[2].Time = bad[2].Time.Add(time.Microsecond)
	if got, want := ingest(t, s, BatchOf(bad)), (store.Result{Conflicts: 3}); got != want {
		t.Errorf("changed resend = %+v; want %+v", got, want)
	}
	fixed := slices.Clone(rs[3:4])
	fixed[0].Unsynced = false
	fixed[0].Time = T0.Add(4 * time.Second)
	if got, want := ingest(t, s, BatchOf(fixed)), (store.Result{Accepted: 1, Corrected: 1}); got != want {
		t.Errorf("corrected unsynced = %+v; want %+v", got, want)
	}
	got := All(t, s, store.Query{Device: "pi-07"})
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
	if got, want := ingest(t, s, BatchOf(rs[3:4])), (store.Result{Conflicts: 1}); got != want {
		t.Errorf("old unsynced resend = %+v; want %+v", got, want)
	}
}

// testConflictCaps: a flood of conflicts is counted whole but keeps
// store.MaxConflictsPerBatch rows per batch and store.MaxConflictsKept
// per device, the newest.
func testConflictCaps(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	const n = 3000
	ingest(t, s, BatchOf(Readings("pi-07", Stream, 1, n)))
	changed := Readings("pi-07", Stream, 1, n)
	for i := range changed {
		changed[i].Value = -1
	}
	for range 12 {
		if got := ingest(t, s, BatchOf(changed)); got.Conflicts != n {
			t.Fatalf("Ingest(%d changed readings) = %+v; want %d conflicts", n, got, n)
		}
	}
	ds, err := s.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := ds[0].Streams[0].Conflicts; got != 12*n {
		t.Errorf("stream conflicts = %d; want %d, every one counted", got, 12*n)
	}
	gaps, err := s.Gaps(t.Context(), "pi-07")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(gaps[0].Conflicts); got != store.MaxConflictsKept {
		t.Errorf("conflicts listed = %d; want the %d kept", got, store.MaxConflictsKept)
	}
	// The first batch's rows are gone: the newest batches' are kept.
	if c := gaps[0].Conflicts; len(c) > 0 && c[0].Seq > store.MaxConflictsPerBatch {
		t.Errorf("newest conflict kept is seq %d; want one of a batch's first %d", c[0].Seq, store.MaxConflictsPerBatch)
	}
}

func testConflictAccounting(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	rs := Readings("pi-07", Stream, 1, 6)
	rs[5].Unsynced, rs[5].Time = true, time.Date(1970, 1, 1, 0, 0, 6, 0, time.UTC)
	ingest(t, s, BatchOf(rs))
	changed := slices.Clone(rs[:2])
	changed[0].Value, changed[1].Unit = 99, "F"
	res, err := s.Ingest(t.Context(), "pi-07", BatchOf(changed))
	if err != nil {
		t.Fatal(err)
	}
	if res.Conflicts != 2 || res.ConflictStream != Stream || res.ConflictSeq != 1 {
		t.Errorf("Ingest(two changed readings) = %+v; want 2 conflicts, the first at %v seq 1", res, Stream)
	}
	fixed := rs[5]
	fixed.Unsynced, fixed.Time = false, T0.Add(6*time.Second)
	if got, want := ingest(t, s, BatchOf([]reading.Reading{fixed})), (store.Result{Accepted: 1, Corrected: 1}); got != want {
		t.Errorf("correction = %+v; want %+v", got, want)
	}
	// The device's heartbeat lists seqs 8–9 as dead-lettered: not missing.
	ingest(t, s, BatchOf(Readings("pi-07", Stream, 10, 10)))
	status := `{"device":"pi-07","dead_letter_ranges":[{"stream":"` + Stream.String() + `","ranges":[[8,9]]},{"stream":"bogus","ranges":[[1,2]]}]}`
	if err := s.SaveStatus(t.Context(), "pi-07", []byte(status), T0); err != nil {
		t.Fatal(err)
	}
	// A status without the ranges (the MQTT last will) keeps them.
	if err := s.SaveStatus(t.Context(), "pi-07", []byte(`{"state":"offline"}`), T0); err != nil {
		t.Fatal(err)
	}
	ds, err := s.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantSum := []store.StreamSummary{{Stream: Stream.String(), HighestSeq: 10, Received: 7, DeadLettered: 2, Missing: 1, Conflicts: 2, Corrected: 1}}
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
	if err := s.SaveStatus(t.Context(), "pi-07", []byte(`{"device":"pi-07","dead_letter_ranges":[]}`), T0); err != nil {
		t.Fatal(err)
	}
	if gaps, err := s.Gaps(t.Context(), "pi-07"); err != nil || !equalJSON(t, gaps[0].Missing, [][2]uint64{{7, 9}}) || len(gaps[0].DeadLettered) != 0 {
		t.Errorf("Gaps() after an empty dead-letter list = %+v, %v; want 7–9 missing", gaps, err)
	}
	// A key repeated within one batch with other contents: the row
	// names the first occurrence, stored by the same batch.
	twice := Readings("pi-07", Stream, 11, 11)
	twice = append(twice, twice[0])
	twice[1].Value = -1
	ingest(t, s, BatchOf(twice))
	gaps, err = s.Gaps(t.Context(), "pi-07")
	if err != nil {
		t.Fatal(err)
	}
	if c := gaps[0].Conflicts[0]; c.Seq != 11 || c.Stored == nil || c.Stored.Value != twice[0].Value || c.Received.Value != -1 {
		t.Errorf("in-batch conflict = %+v (stored %+v); want seq 11 stored %v, received -1", c, c.Stored, twice[0].Value)
	}
}

func testFieldsRoundTrip(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	r := reading.Reading{Device: "pi-07", Stream: reading.StreamID(math.MaxUint64), Seq: reading.MaxSeq,
		Sensor: "grün.temp", Value: -1.5e-300, Labels: map[string]string{"room": "a", "k": "v\"x"},
		Time: T0, Unsynced: true}
	ingest(t, s, BatchOf([]reading.Reading{r}))
	got := All(t, s, store.Query{Device: "pi-07"})
	if len(got) != 1 {
		t.Fatalf("stored %d; want 1", len(got))
	}
	g := got[0]
	if g.Stream != r.Stream || g.Seq != r.Seq || g.Sensor != r.Sensor || g.Value != r.Value || g.Unit != "" ||
		!g.Time.Equal(T0.Truncate(time.Microsecond)) || !g.Unsynced || len(g.Labels) != 2 || g.Labels["k"] != "v\"x" || g.ReceivedAt.IsZero() {
		t.Errorf("round trip = %+v; want %+v", g, r)
	}
}

func testGapsAndDropped(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	other := reading.StreamID(0x0123456789abcdef)
	rs := append(Readings("pi-07", Stream, 1, 3), Readings("pi-07", Stream, 6, 7)...)
	rs = append(rs, Readings("pi-07", Stream, 10, 10)...)
	rs = append(rs, Readings("pi-07", other, 2, 2)...)
	ingest(t, s, BatchOf(rs, reading.Dropped{Device: "pi-07", Stream: Stream, From: 4, To: 4}))
	ingest(t, s, BatchOf(nil, reading.Dropped{Device: "pi-07", Stream: Stream, From: 4, To: 4})) // reported twice
	gaps, err := s.Gaps(t.Context(), "pi-07")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.StreamGaps{
		{Stream: other.String(), HighestSeq: 2, Missing: [][2]uint64{{1, 1}}, Dropped: [][2]uint64{}, DeadLettered: [][2]uint64{}, Conflicts: []store.Conflict{}},
		{Stream: Stream.String(), HighestSeq: 10, Missing: [][2]uint64{{5, 5}, {8, 9}}, Dropped: [][2]uint64{{4, 4}}, DeadLettered: [][2]uint64{}, Conflicts: []store.Conflict{}},
	}
	if !equalJSON(t, gaps, want) {
		t.Errorf("Gaps() = %+v; want %+v", gaps, want)
	}
	ds, err := s.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantSum := []store.StreamSummary{
		{Stream: Stream.String(), HighestSeq: 10, Received: 6, Dropped: 1, Missing: 3},
		{Stream: other.String(), HighestSeq: 2, Received: 1, Missing: 1},
	}
	if !equalJSON(t, ds[0].Streams, wantSum) {
		t.Errorf("Devices()[0].Streams = %+v; want %+v", ds[0].Streams, wantSum)
	}
}

func testConcurrentSameBatch(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	// Two replicas store the same batch at once: one stores it, the
	// other finds duplicates; no error, no second row.
	var wg sync.WaitGroup
	res := make([]store.Result, 4)
	errs := make([]error, 4)
	for i := range res {
		wg.Go(func() { res[i], errs[i] = s.Ingest(t.Context(), "pi-07", BatchOf(Readings("pi-07", Stream, 1, 300))) })
	}
	wg.Wait()
	var sum store.Result
	for i := range res {
		if errs[i] != nil {
			t.Fatalf("Ingest() error = %v", errs[i])
		}
		sum.Accepted += res[i].Accepted
		sum.Duplicates += res[i].Duplicates
		sum.Conflicts += res[i].Conflicts
	}
	if want := (store.Result{Accepted: 300, Duplicates: 900}); sum != want {
		t.Errorf("four concurrent copies of a batch: %+v in all; want %+v", sum, want)
	}
	ds, err := s.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := ds[0].Streams; len(got) != 1 || got[0].Received != 300 || got[0].Missing != 0 {
		t.Errorf("stream accounting = %+v; want 300 received, none missing", got)
	}
}

func testReject(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	if err := s.Reject(t.Context(), store.Rejected{Topic: "outpost/pi-07/readings", Device: "pi-07", Err: "line 1: bad", Line: 1,
		Payload: []byte("{"), ReceivedAt: T0}); err != nil {
		t.Errorf("Reject() error = %v", err)
	}
	// A message of 5 MiB is kept as its first KiB, size and SHA-256
	// (whether the caller cut it or not).
	junk := make([]byte, 5<<20)
	for _, m := range []store.Rejected{{Payload: junk}, {}} {
		m.Topic, m.Device, m.Err, m.ReceivedAt = "outpost/pi-07/readings", "pi-07", "junk", T0
		if m.Payload == nil {
			m.KeepPayload(junk)
		}
		if err := s.Reject(t.Context(), m); err != nil {
			t.Errorf("Reject(5 MiB) error = %v", err)
		}
	}
}

func testClockFlag(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	// Seqs 1–3 were taken before the device clock was synchronised and
	// sent so: they stay flagged. Seq 3 is then sent again corrected.
	rs := Readings("pi-07", Stream, 1, 6)
	for i := range 3 {
		rs[i].Unsynced = true
		rs[i].Time = time.Unix(int64(10+i), 0).UTC()
	}
	ingest(t, s, BatchOf(rs))
	seqs := func(c store.ClockFilter) []uint64 {
		var out []uint64
		for _, st := range All(t, s, store.Query{Device: "pi-07", Clock: c}) {
			out = append(out, st.Seq)
		}
		slices.Sort(out)
		return out
	}
	if got := seqs(store.ClockUnsynced); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("Readings(clock unsynced) seqs = %v; want [1 2 3]", got)
	}
	if got := seqs(store.ClockSynced); !slices.Equal(got, []uint64{4, 5, 6}) {
		t.Errorf("Readings(clock synced) seqs = %v; want [4 5 6]", got)
	}
	fixed := slices.Clone(rs[2:3])
	fixed[0].Unsynced, fixed[0].Time = false, T0.Add(3*time.Second)
	if got, want := ingest(t, s, BatchOf(fixed)), (store.Result{Accepted: 1, Corrected: 1}); got != want {
		t.Errorf("corrected resend = %+v; want %+v", got, want)
	}
	if got := seqs(store.ClockUnsynced); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("after the correction, Readings(clock unsynced) seqs = %v; want [1 2]", got)
	}
	if got := seqs(store.ClockAll); len(got) != 6 {
		t.Errorf("Readings(clock all) = %v; want 6 readings", got)
	}
	// The device's clock state is its last heartbeat's.
	for _, c := range []struct{ status, want string }{
		{`{"device":"pi-07","clock":"unsynced"}`, "unsynced"},
		{`{"device":"pi-07","clock":"synced"}`, "synced"},
		{`{"state":"offline"}`, ""},
	} {
		if err := s.SaveStatus(t.Context(), "pi-07", []byte(c.status), T0); err != nil {
			t.Fatal(err)
		}
		ds, err := s.Devices(t.Context())
		if err != nil || len(ds) != 1 || ds[0].Clock != c.want {
			t.Errorf("Devices() after heartbeat %s = %+v, %v; want clock %q", c.status, ds, err, c.want)
		}
	}
}

func testQueries(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	ingest(t, s, BatchOf(Readings("pi-07", Stream, 1, 10)))
	latest, err := s.Latest(t.Context(), "pi-07")
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 2 || latest[0].Sensor != "h" || latest[0].Seq != 9 || latest[1].Sensor != "t" || latest[1].Seq != 10 {
		t.Errorf("Latest() = %+v; want h seq 9, t seq 10", latest)
	}
	got := All(t, s, store.Query{Device: "pi-07", Sensor: "t", From: T0.Add(4 * time.Second), To: T0.Add(8 * time.Second)})
	var seqs []uint64
	for _, g := range got {
		seqs = append(seqs, g.Seq)
	}
	if !slices.Equal(seqs, []uint64{4, 6}) {
		t.Errorf("Readings(sensor t, [4s, 8s)) seqs = %v; want [4 6]", seqs)
	}
	if got := All(t, s, store.Query{Device: "nobody"}); len(got) != 0 {
		t.Errorf("Readings(unknown device) = %d readings; want 0", len(got))
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
