package storetest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

// testDeviceChecks: CheckDevice answers what MQTT ingest needs, and the
// device generation moves with every add, revoke and rotation (whoever
// makes them), not with ingest or heartbeats.
func testDeviceChecks(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	ctx := t.Context()
	gen := func() int64 {
		t.Helper()
		g, err := s.DevicesGeneration(ctx)
		if err != nil {
			t.Fatalf("DevicesGeneration() error = %v", err)
		}
		return g
	}
	if err := s.CheckDevice(ctx, "pi-07"); err != nil {
		t.Errorf("CheckDevice(pi-07) = %v; want nil", err)
	}
	if err := s.CheckDevice(ctx, "pi-99"); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("CheckDevice(never added) = %v; want ErrUnknownDevice", err)
	}
	g0 := gen()
	ingest(t, s, BatchOf(Readings("pi-07", Stream, 1, 3)))
	if err := s.SaveStatus(ctx, "pi-07", []byte(`{"device":"pi-07"}`), T0); err != nil {
		t.Fatal(err)
	}
	if g := gen(); g != g0 {
		t.Errorf("generation moved from %d to %d with ingest and a heartbeat; want unchanged", g0, g)
	}
	if err := s.AddDevice(ctx, "pi-08", store.HashToken("tok-pi-08"), T0); err != nil {
		t.Fatal(err)
	}
	g1 := gen()
	if g1 == g0 {
		t.Errorf("generation %d unchanged by AddDevice", g1)
	}
	if err := s.RevokeDevice(ctx, "pi-07", T0); err != nil {
		t.Fatal(err)
	}
	g2 := gen()
	if g2 == g1 {
		t.Errorf("generation %d unchanged by RevokeDevice", g2)
	}
	if err := s.CheckDevice(ctx, "pi-07"); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("CheckDevice(revoked) = %v; want ErrRevoked", err)
	}
	if err := s.RotateToken(ctx, "pi-07", store.HashToken("tok-pi-07b"), 0, T0); err != nil {
		t.Fatal(err)
	}
	if g := gen(); g == g2 {
		t.Errorf("generation %d unchanged by RotateToken", g)
	}
	if err := s.CheckDevice(ctx, "pi-07"); err != nil {
		t.Errorf("CheckDevice(rotated after revoke) = %v; want nil (reinstated)", err)
	}
}

// testRotate: the old token works until the grace ends, the new one at
// once; a revoked device gets a new token and none of its old ones
// works again.
func testRotate(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	ctx := t.Context()
	auth := func(tok string) (string, error) { return s.Authenticate(ctx, store.HashToken(tok)) }
	now := time.Now().UTC()
	if err := s.RotateToken(ctx, "pi-99", store.HashToken("x"), time.Hour, now); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("RotateToken(unknown) = %v; want ErrUnknownDevice", err)
	}
	if err := s.RotateToken(ctx, "pi-07", store.HashToken("tok-2"), 24*time.Hour, now); err != nil {
		t.Fatalf("RotateToken() error = %v", err)
	}
	for _, tok := range []string{"tok-pi-07", "tok-2"} {
		if id, err := auth(tok); err != nil || id != "pi-07" {
			t.Errorf("Authenticate(%s) within the grace = %q, %v; want pi-07", tok, id, err)
		}
	}
	// A second rotation whose grace has already ended (rotated a day
	// ago, grace an hour): only the newest token works.
	if err := s.RotateToken(ctx, "pi-07", store.HashToken("tok-3"), time.Hour, now.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if id, err := auth("tok-2"); !errors.Is(err, store.ErrUnknownToken) {
		t.Errorf("Authenticate(token replaced, grace over) = %q, %v; want ErrUnknownToken", id, err)
	}
	if id, err := auth("tok-pi-07"); err != nil || id != "pi-07" {
		t.Errorf("Authenticate(first token, its 24h grace running) = %q, %v; want pi-07", id, err)
	}
	// Revoked: every token fails, the one in its grace too.
	if err := s.RevokeDevice(ctx, "pi-07", now); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"tok-pi-07", "tok-3"} {
		if _, err := auth(tok); err == nil {
			t.Errorf("Authenticate(%s) of a revoked device succeeded", tok)
		}
	}
	// A rotation reinstates it with the new token alone, grace or not.
	if err := s.RotateToken(ctx, "pi-07", store.HashToken("tok-4"), 24*time.Hour, now); err != nil {
		t.Fatal(err)
	}
	if id, err := auth("tok-4"); err != nil || id != "pi-07" {
		t.Errorf("Authenticate(new token after revoke) = %q, %v; want pi-07", id, err)
	}
	for _, tok := range []string{"tok-pi-07", "tok-2", "tok-3"} {
		if _, err := auth(tok); !errors.Is(err, store.ErrUnknownToken) {
			t.Errorf("Authenticate(%s, a token from before the revoke) = %v; want ErrUnknownToken", tok, err)
		}
	}
	ds, err := s.Devices(ctx)
	if err != nil || len(ds) != 1 || ds[0].Revoked != nil {
		t.Errorf("Devices() after reinstating = %+v, %v; want pi-07 not revoked", ds, err)
	}
}

// testRetention: readings received before the cut go, in batches of the
// limit asked; the others stay.
func testRetention(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	ctx := t.Context()
	old, cut := time.Now().UTC().Add(-48*time.Hour), time.Now().UTC().Add(-24*time.Hour)
	b := BatchOf(Readings("pi-07", Stream, 1, 10))
	b.ReceivedAt = old
	ingest(t, s, b)
	ingest(t, s, BatchOf(Readings("pi-07", Stream, 11, 15)))
	var calls []int64
	for {
		n, err := s.DeleteReceivedBefore(ctx, cut, 4)
		if err != nil {
			t.Fatalf("DeleteReceivedBefore() error = %v", err)
		}
		calls = append(calls, n)
		if n < 4 {
			break
		}
	}
	if fmt.Sprint(calls) != "[4 4 2]" {
		t.Errorf("DeleteReceivedBefore(limit 4) deleted %v; want [4 4 2]", calls)
	}
	got := All(t, s, store.Query{Device: "pi-07"})
	if len(got) != 5 || got[0].Seq != 11 || got[4].Seq != 15 {
		t.Errorf("readings left = %d (first %+v); want seqs 11..15", len(got), got)
	}
}

// testDeadLetterClamp: a heartbeat's dead_letter_ranges are kept
// clamped: seqs within what a store holds (no overflow of the counts),
// merged, and at most store.MaxDeadLetterRanges of them.
func testDeadLetterClamp(t *testing.T, open Open) {
	t.Parallel()
	s := migrated(t, open)
	ctx := t.Context()
	ingest(t, s, BatchOf(Readings("pi-07", Stream, 1, 3)))
	var rs []string
	for i := range 5000 {
		rs = append(rs, fmt.Sprintf("[%d,%d]", 100+3*i, 101+3*i))
	}
	other := reading.StreamID(0xa000000000000001) // listed after Stream
	status := `{"device":"pi-07","dead_letter_ranges":[{"stream":"` + other.String() + `","ranges":[` + strings.Join(rs, ",") + `]},` +
		`{"stream":"` + Stream.String() + `","ranges":[[10,` + fmt.Sprint(uint64(math.MaxUint64)) + `],[0,5],[9,2]]}]}`
	if err := s.SaveStatus(ctx, "pi-07", []byte(status), T0); err != nil {
		t.Fatal(err)
	}
	gaps, err := s.Gaps(ctx, "pi-07")
	if err != nil || len(gaps) != 2 {
		t.Fatalf("Gaps() = %+v, %v; want two streams", gaps, err)
	}
	var dl [][2]uint64
	for _, g := range gaps {
		dl = append(dl, g.DeadLettered...)
	}
	if len(dl) != store.MaxDeadLetterRanges {
		t.Errorf("dead-lettered ranges kept: %d; want %d", len(dl), store.MaxDeadLetterRanges)
	}
	for _, r := range dl {
		if r[0] < 1 || r[0] > r[1] || r[1] > math.MaxInt64 {
			t.Errorf("dead-lettered range %v kept; want 1 <= from <= to <= 2^63-1", r)
		}
	}
	ds, err := s.Devices(ctx)
	if err != nil || len(ds) != 1 || len(ds[0].Streams) != 1 {
		t.Fatalf("Devices() = %+v, %v", ds, err)
	}
	if n := ds[0].Streams[0].DeadLettered; n < math.MaxInt64-20 || n > math.MaxInt64 {
		t.Errorf("dead_lettered = %d; want [10, 2^63-1] counted once, no overflow", n)
	}
}
