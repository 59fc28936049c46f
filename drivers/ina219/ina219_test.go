package ina219

import (
	"math"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
)

// The datasheet's programming example (§8.5.1) for a 0.1 Ω shunt and up to
// 3.2 A: Current_LSB = 3.2 A / 2¹⁵ ≈ 97.66 µA, Cal = trunc(0.04096 /
// (Current_LSB × R_SHUNT)) = 4194 = 0x1062, Power_LSB = 20 × Current_LSB.
func TestSenseDatasheetCalibration(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x40, W: []byte{0x05, 0x10, 0x62}}, // calibration register
		{Addr: 0x40, W: []byte{0x00, 0x1F, 0xFF}}, // config: ±320 mV, 128-sample averages, continuous
		// A 12 V load drawing 0.4 A: shunt 40 mV = 4000 × 10 µV; bus 12 V =
		// 3000 × 4 mV in bits 15–3 (CNVR set); current 4096 × LSB; power
		// 2458 × Power_LSB ≈ 4.8 W.
		{Addr: 0x40, W: []byte{0x01}, R: []byte{0x0F, 0xA0}},
		{Addr: 0x40, W: []byte{0x02}, R: []byte{0x5D, 0xC2}},
		{Addr: 0x40, W: []byte{0x04}, R: []byte{0x10, 0x00}},
		{Addr: 0x40, W: []byte{0x03}, R: []byte{0x09, 0x9A}},
	}}
	d, err := New(bus, 0x40, Opts{})
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	v, err := d.Sense()
	if err != nil {
		t.Fatalf("Sense error = %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"bus", v.BusVolts, 12, 1e-9},
		{"shunt", v.ShuntVolts, 0.04, 1e-9},
		{"current", v.Current, 0.4, 1e-5},
		{"power", v.Power, 4.8, 0.005},
	} {
		if math.Abs(c.got-c.want) > c.tol {
			t.Errorf("%s = %v; want %v ± %v", c.name, c.got, c.want, c.tol)
		}
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestOverflow(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x41, W: []byte{0x05, 0x10, 0x62}},
		{Addr: 0x41, W: []byte{0x00, 0x1F, 0xFF}},
		{Addr: 0x41, W: []byte{0x01}, R: []byte{0x7F, 0xFF}},
		{Addr: 0x41, W: []byte{0x02}, R: []byte{0x5D, 0xC3}}, // OVF: the math overflowed
	}}
	d, err := New(bus, 0x41, Opts{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d.Sense(); err == nil || !strings.HasPrefix(err.Error(), "ina219: INA219 on playback at 0x41: ") {
		t.Errorf("Sense() with OVF = %+v, %v; want an ina219 error", v, err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := New(&i2ctest.Playback{}, 0x50, Opts{}); err == nil {
		t.Error("New(0x50) error = nil")
	}
	if _, err := New(&i2ctest.Playback{}, 0x40, Opts{ShuntOhms: -1}); err == nil {
		t.Error("New(negative shunt) error = nil")
	}
}
