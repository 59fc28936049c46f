package thermal

import (
	"errors"
	"testing"
)

func TestRead(t *testing.T) {
	d, err := New("testdata/sys", 0)
	if err != nil {
		t.Fatalf("New(testdata/sys, 0) error = %v", err)
	}
	if got, want := d.String(), "thermal_zone0(cpu-thermal)"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	v, err := d.Read()
	if err != nil || v != 48.312 {
		t.Errorf("Read() = %v, %v; want 48.312, nil", v, err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := New("testdata/sys", 7); !errors.Is(err, ErrNoZone) {
		t.Errorf("New(zone 7) error = %v; want ErrNoZone", err)
	}
	if _, err := New("testdata/sys", -1); err == nil {
		t.Error("New(zone -1) error = nil; want an error")
	}
	d, err := New("testdata/sys", 1)
	if err != nil {
		t.Fatalf("New(zone 1) error = %v", err)
	}
	if v, err := d.Read(); err == nil {
		t.Errorf("Read() of a garbage file = %v, nil; want an error", v)
	}
}
