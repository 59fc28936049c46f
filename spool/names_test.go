package spool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// TestManySeriesInOneCommitReopen: several new series added in one commit
// must each keep their own name-table entry. (bbolt keeps a Put's value
// slice until the commit; a reused scratch buffer once made every entry of
// a commit hold the last series' bytes, and the file was quarantined at the
// next open.)
func TestManySeriesInOneCommitReopen(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir)
	opts.CommitInterval = time.Hour // all appends share the commit at Close
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	units := []string{"C", "%", "hPa", "V"}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := range 40 {
		r := reading.Reading{Sensor: fmt.Sprintf("demo.s%d", i%4), Unit: units[i%4], Value: float64(i), Time: t0.Add(time.Duration(i) * time.Second)}
		if _, err := s.Append(context.Background(), r, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, opts)
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Quarantined != 0 || st.Readings != 40 {
		t.Fatalf("reopened spool: %d readings, %d quarantined; want 40 and none", st.Readings, st.Quarantined)
	}
	b, err := s.Next(100, 1<<20)
	if err != nil || b == nil || len(b.Readings) != 40 {
		t.Fatalf("Next = %v, %v; want 40 readings", b, err)
	}
	for i, r := range b.Readings {
		if want := fmt.Sprintf("demo.s%d", i%4); r.Sensor != want || r.Unit != units[i%4] || r.Value != float64(i) {
			t.Errorf("reading %d = %s %v %s; want %s %d %s", i, r.Sensor, r.Value, r.Unit, want, i, units[i%4])
		}
	}
}
