package ads1x15

import (
	"math"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
)

// Config register (ADS1115 datasheet §9.6.3): OS=1 (start), MUX, PGA, MODE=1
// (single shot), DR, COMP_QUE=11 (comparator off).
func config(mux, pga, dr uint16) []byte {
	c := uint16(0x8000) | mux<<12 | pga<<9 | 0x0100 | dr<<5 | 0x0003
	return []byte{0x01, byte(c >> 8), byte(c)}
}

func TestADS1115ScaleOffset(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		// A0 at ±4.096 V (PGA 001), 128 SPS (DR 100): 0x4000 = 16384 codes of
		// 125 µV (datasheet Table 3) = 2.048 V.
		{Addr: 0x49, W: config(4, 1, 4)},
		{Addr: 0x49, W: []byte{0x00}, R: []byte{0x40, 0x00}},
		// A1-A3 differential at ±0.256 V (PGA 101): 0xC000 = -16384 codes of
		// 7.8125 µV = -0.128 V.
		{Addr: 0x49, W: config(2, 5, 4)},
		{Addr: 0x49, W: []byte{0x00}, R: []byte{0xC0, 0x00}},
	}}
	d, err := New(bus, 0x49, "ads1115", []Channel{
		// A capacitive soil probe: 2.8 V dry (0 %), 1.2 V wet (100 %).
		{Name: "moisture", Input: A0, Scale: -62.5, Offset: 175, Unit: "%"},
		{Name: "shunt", Input: A1MinA3, Range: 0.256},
	})
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	got, err := d.Read(nil)
	if err != nil {
		t.Fatalf("Read error = %v", err)
	}
	want := []Value{
		{Name: "moisture", Unit: "%", Volts: 2.048, Value: 47},
		{Name: "shunt", Unit: "V", Volts: -0.128, Value: -0.128},
	}
	if len(got) != len(want) {
		t.Fatalf("Read = %+v; want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Unit != w.Unit || math.Abs(g.Volts-w.Volts) > 1e-9 || math.Abs(g.Value-w.Value) > 1e-9 {
			t.Errorf("Read[%d] = %+v; want %+v", i, g, w)
		}
	}
	if err := bus.Close(); err != nil {
		t.Errorf("playback not fully consumed: %v", err)
	}
}

func TestADS1015(t *testing.T) {
	// The ADS1015's 12-bit result is left-aligned: 0x7FF0 is code 2047 of
	// 2 mV at ±4.096 V (datasheet Table 1) = 4.094 V. 128 SPS is DR 000.
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x48, W: config(7, 1, 0)},
		{Addr: 0x48, W: []byte{0x00}, R: []byte{0x7F, 0xF0}},
	}}
	d, err := New(bus, 0x48, "ads1015", []Channel{{Name: "pressure", Input: A3, Scale: 2.5, Offset: -1.25, Unit: "bar"}})
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	got, err := d.Read(nil)
	if err != nil || len(got) != 1 || math.Abs(got[0].Volts-4.094) > 1e-9 || math.Abs(got[0].Value-(4.094*2.5-1.25)) > 1e-9 {
		t.Errorf("Read = %+v, %v; want 4.094 V = 8.985 bar", got, err)
	}
	if err := bus.Close(); err != nil {
		t.Errorf("playback not fully consumed: %v", err)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		addr  uint16
		chip  string
		chans []Channel
	}{
		{0x76, "ads1115", []Channel{{Name: "a", Input: A0}}},
		{0x48, "ads1234", []Channel{{Name: "a", Input: A0}}},
		{0x48, "ads1115", nil},
		{0x48, "ads1115", []Channel{{Name: "a", Input: A0, Range: 3}}},
		{0x48, "ads1115", []Channel{{Name: "a", Input: A0, Scale: math.Inf(1)}}},
	} {
		if _, err := New(&i2ctest.Playback{}, tc.addr, tc.chip, tc.chans); err == nil || !strings.HasPrefix(err.Error(), "ads1") {
			t.Errorf("New(%#x, %s, %+v) error = %v; want an error prefixed with the chip", tc.addr, tc.chip, tc.chans, err)
		}
	}
	// A NACK on the conversion read.
	bus := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{{Addr: 0x48, W: config(4, 1, 4)}}}
	d, err := New(bus, 0x48, "ads1115", []Channel{{Name: "soil", Input: A0}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d.Read(nil); err == nil || !strings.HasPrefix(err.Error(), "ads1115 on playback at 0x48: channel soil: ") {
		t.Errorf("Read on a failing bus = %+v, %v; want an error naming chip and channel", v, err)
	}
}
