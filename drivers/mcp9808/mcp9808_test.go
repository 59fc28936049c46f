package mcp9808

import (
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
)

func TestSense(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x1A, W: []byte{0x08, 0x03}},       // resolution register: 0.0625 °C
		{Addr: 0x1A, W: []byte{0x01, 0x00, 0x00}}, // config: continuous conversion
		// Ta register (datasheet §5.1.3): bits 15–13 are alert flags, bit 12
		// the sign, then 0.0625 °C units. 0xC194: flags set, +0x194 = 25.25.
		{Addr: 0x1A, W: []byte{0x05}, R: []byte{0xC1, 0x94}},
		// 0x1FF0: sign set, 0xFF0 − 4096 units = −1 °C.
		{Addr: 0x1A, W: []byte{0x05}, R: []byte{0x1F, 0xF0}},
		{Addr: 0x1A, W: []byte{0x01, 0x01, 0x00}}, // Halt: shutdown bit
	}}
	d, err := New(bus, 0x1A)
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	for _, want := range []float64{25.25, -1} {
		if got, err := d.Sense(); err != nil || got != want {
			t.Errorf("Sense() = %v, %v; want %v", got, err, want)
		}
	}
	if err := d.Halt(); err != nil {
		t.Errorf("Halt error = %v", err)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := New(&i2ctest.Playback{}, 0x20); err == nil || !strings.HasPrefix(err.Error(), "mcp9808: ") {
		t.Errorf("New(0x20) error = %v", err)
	}
	if _, err := New(&i2ctest.Playback{DontPanic: true}, 0x18); err == nil || !strings.HasPrefix(err.Error(), "mcp9808: playback at 0x18: ") {
		t.Errorf("New(no chip) error = %v", err)
	}
}
