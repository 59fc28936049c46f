package ds18b20

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const root = "testdata/sys"

func TestReadGoodProbes(t *testing.T) {
	d, err := New(root, []string{"28-0316a2795bff", "28-000005e2fdc3"})
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	if got, want := d.String(), "ds18b20(28-000005e2fdc3,28-0316a2795bff)"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	got, err := d.Read(nil)
	if err != nil {
		t.Fatalf("Read error = %v", err)
	}
	want := []Temp{{"28-000005e2fdc3", 23.125}, {"28-0316a2795bff", -10.125}}
	if !slices.Equal(got, want) {
		t.Errorf("Read = %v; want %v", got, want)
	}
}

func TestReadBadProbes(t *testing.T) {
	// With no ids, New takes every family-28 probe: two good, three bad.
	d, err := New(root, nil)
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	if got := len(d.Probes()); got != 5 {
		t.Fatalf("Probes() = %v; want 5 probes", d.Probes())
	}
	got, err := d.Read(nil)
	if len(got) != 2 || got[0].Celsius != 23.125 || got[1].Celsius != -10.125 {
		t.Errorf("Read = %v; want the two good probes", got)
	}
	for _, want := range []struct {
		id  string
		err error
	}{
		{"28-3c01d607d4c2", ErrCRC},
		{"28-0417c1b3a6ff", ErrPowerOnReset},
		{"28-00000a1b2c3d", ErrNoResponse},
	} {
		if !errors.Is(err, want.err) {
			t.Errorf("Read error = %v; want it to wrap %v", err, want.err)
		}
		if !strings.Contains(err.Error(), want.id) {
			t.Errorf("Read error = %v; want it to name %s", err, want.id)
		}
	}
	var pe *ProbeError
	if !errors.As(err, &pe) {
		t.Errorf("Read error is not a *ProbeError: %T", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(root, []string{"28-ffffffffffff"}); !errors.Is(err, ErrNoProbe) {
		t.Errorf("New(absent probe) error = %v; want ErrNoProbe", err)
	}
	if _, err := New(root, []string{"../../etc"}); err == nil {
		t.Error("New(bad id) error = nil; want an error")
	}
	if _, err := New(t.TempDir(), nil); !errors.Is(err, ErrNoProbe) {
		t.Errorf("New(empty bus) error = %v; want ErrNoProbe", err)
	}
}

func TestParseW1Slave(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23.125, false},
		{"", 0, true},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", 0, true},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57\n", 0, true},
		{"72 01 4b 46 7f ff 0e 10 57 YES\n72 01 t=1\n", 0, true},
		{"ff ff ff ff ff ff ff ff ff : crc=c9 YES\nff ff t=-62\n", 0, true},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 t=abc\n", 0, true},
	} {
		got, err := parseW1Slave([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseW1Slave(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
