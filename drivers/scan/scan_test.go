package scan

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// fakeBus is an I²C bus with chips at some addresses. It records how each
// address was probed.
type fakeBus struct {
	present, held map[uint16]bool
	quick         bool
	probed        map[uint16]mode
	closed        bool
}

func (b *fakeBus) canQuick() bool { return b.quick }
func (b *fakeBus) Close() error   { b.closed = true; return nil }

func (b *fakeBus) probe(a uint16, m mode) (status, error) {
	b.probed[a] = m
	switch {
	case b.held[a]:
		return busy, nil
	case b.present[a]:
		return present, nil
	}
	return absent, nil
}

// devRoot makes a /dev with the given i2c-N files.
func devRoot(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestScanNamesChips(t *testing.T) {
	bus := &fakeBus{
		present: map[uint16]bool{0x48: true, 0x50: true, 0x76: true, 0x03: true, 0x78: true},
		held:    map[uint16]bool{0x68: true},
		quick:   true,
		probed:  map[uint16]mode{},
	}
	opened := []string{}
	r := Scan(Options{
		DevRoot: devRoot(t, "i2c-1"),
		SysRoot: "testdata/sys",
		open: func(p string) (prober, error) {
			opened = append(opened, filepath.Base(p))
			return bus, nil
		},
	})
	if len(r.Buses) != 1 || r.Buses[0].Number != 1 || r.Buses[0].Adapter != "bcm2835 (i2c@7e804000)" || r.Buses[0].Err != nil {
		t.Fatalf("Buses = %+v; want bus 1 named by the kernel", r.Buses)
	}
	var got []uint16
	for _, d := range r.Buses[0].Found {
		got = append(got, d.Addr)
		if d.InUse != (d.Addr == 0x68) {
			t.Errorf("%#x in use = %v", d.Addr, d.InUse)
		}
	}
	// 0x03 and 0x78 are outside i2cdetect's default range: never probed.
	if want := []uint16{0x48, 0x50, 0x68, 0x76}; !slices.Equal(got, want) {
		t.Errorf("found %#x; want %#x", got, want)
	}
	if len(bus.probed) != LastAddr-FirstAddr+1 {
		t.Errorf("probed %d addresses; want %d (0x08–0x77)", len(bus.probed), LastAddr-FirstAddr+1)
	}
	// EEPROM ranges are read, never written to.
	for a, m := range bus.probed {
		wantRead := a >= 0x30 && a <= 0x37 || a >= 0x50 && a <= 0x5F
		if (m == readByte) != wantRead {
			t.Errorf("address %#x probed with mode %d; want read byte = %v", a, m, wantRead)
		}
	}
	if !bus.closed {
		t.Error("bus not closed")
	}
	// 1-Wire from the testdata tree.
	if r.W1Err != nil || len(r.OneWire) != 2 || r.OneWire[0].ID != "10-000802b4c5d1" || r.OneWire[1].Family != "DS18B20 temperature probe" {
		t.Errorf("OneWire = %+v, %v", r.OneWire, r.W1Err)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"I²C bus 1 (",
		"bcm2835 (i2c@7e804000)):",
		"  0x48  ADS1115/ADS1015 ADC",
		"  0x68  in use by a kernel driver (UU)",
		"  0x76  BME280/BMP280",
		"  28-0316a2795bff  DS18B20 temperature probe",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("text =\n%s\nwant it to contain %q", b.String(), w)
		}
	}
}

func TestQuickUnsupported(t *testing.T) {
	bus := &fakeBus{probed: map[uint16]mode{}}
	Scan(Options{DevRoot: devRoot(t, "i2c-3"), SysRoot: t.TempDir(), open: func(string) (prober, error) { return bus, nil }})
	for a, m := range bus.probed {
		if m != readByte {
			t.Fatalf("address %#x probed with quick write on an adapter without it", a)
		}
	}
}

func TestPermissionDenied(t *testing.T) {
	r := Scan(Options{
		DevRoot: devRoot(t, "i2c-1"),
		SysRoot: "testdata/sys",
		open: func(p string) (prober, error) {
			return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EACCES}
		},
	})
	if len(r.Buses) != 1 || !errors.Is(r.Buses[0].Err, ErrPermission) {
		t.Fatalf("Buses = %+v; want ErrPermission", r.Buses)
	}
	var b strings.Builder
	r.WriteText(&b)
	if !strings.Contains(b.String(), "add the user to the i2c group") {
		t.Errorf("text =\n%s\nwant the i2c group hint", b.String())
	}
}

func TestNoBus(t *testing.T) {
	var b strings.Builder
	err := Run(&b, Options{DevRoot: t.TempDir(), SysRoot: t.TempDir()})
	if err == nil {
		t.Error("Run with no bus at all: error = nil")
	}
	for _, w := range []string{"dtparam=i2c_arm=on", "dtoverlay=w1-gpio"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("text =\n%s\nwant it to contain %q", b.String(), w)
		}
	}
}

func TestNotAnAdapter(t *testing.T) {
	// The real opener on a regular file: I2C_FUNCS fails (ENOTTY).
	r := Scan(Options{DevRoot: devRoot(t, "i2c-9", "i2c-x"), SysRoot: "testdata/sys"})
	if len(r.Buses) != 1 || r.Buses[0].Err == nil || !strings.Contains(r.Buses[0].Err.Error(), "not an I²C adapter") {
		t.Fatalf("Buses = %+v; want bus 9 with a 'not an I²C adapter' error", r.Buses)
	}
	var b strings.Builder
	if err := Run(&b, Options{DevRoot: devRoot(t, "i2c-9"), SysRoot: "testdata/sys"}); err != nil {
		t.Errorf("Run error = %v; want nil (the 1-Wire bus was scanned)", err)
	}
}

func TestLikely(t *testing.T) {
	for a, want := range map[uint16]string{0x76: "BME280", 0x77: "BMP280", 0x48: "ADS1115", 0x4B: "ADS1015", 0x38: "AHT20", 0x23: "BH1750", 0x18: "MCP9808", 0x62: "SCD4", 0x01: ""} {
		if got := Likely(a); !strings.Contains(got, want) || want == "" && got != "" {
			t.Errorf("Likely(%#x) = %q; want it to name %q", a, got, want)
		}
	}
}
