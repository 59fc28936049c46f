package aht20

import (
	"math"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
)

// crc8 is the datasheet's CRC: polynomial x⁸+x⁵+x⁴+1 (0x31), initial 0xFF.
func crc8(b []byte) byte {
	c := byte(0xFF)
	for _, x := range b {
		c ^= x
		for range 8 {
			if c&0x80 != 0 {
				c = c<<1 ^ 0x31
			} else {
				c <<= 1
			}
		}
	}
	return c
}

// measurement is the 7 bytes the chip returns: status, 20 bits of
// humidity, 20 bits of temperature, CRC.
func measurement(hum, temp uint32) []byte {
	b := []byte{0x1C, byte(hum >> 12), byte(hum >> 4), byte(hum<<4) | byte(temp>>16&0xF), byte(temp >> 8), byte(temp)}
	return append(b, crc8(b))
}

func ops(m []byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: 0x38, W: []byte{0x71}, R: []byte{0x1C}}, // status: calibrated (bit 3)
		{Addr: 0x38, W: []byte{0xAC, 0x33, 0x00}},      // trigger measurement
		{Addr: 0x38, R: m},                             // read after 80 ms
	}
}

func TestSense(t *testing.T) {
	// Datasheet §6.2: RH = S/2²⁰ × 100 %, T = S/2²⁰ × 200 − 50 °C.
	// S_RH = 2¹⁹ → 50 %; S_T = 0x60000 → 25 °C.
	bus := &i2ctest.Playback{Ops: ops(measurement(0x80000, 0x60000))}
	d, err := New(bus)
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	v, err := d.Sense()
	if err != nil || math.Abs(v.Temperature-25) > 1e-6 || math.Abs(v.Humidity-50) > 1e-6 {
		t.Errorf("Sense() = %+v, %v; want 25 °C, 50 %%RH", v, err)
	}
	if d.String() != "AHT20 on playback at 0x38" {
		t.Errorf("String() = %q", d)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestCRCError(t *testing.T) {
	m := measurement(0x80000, 0x60000)
	m[6] ^= 0xFF
	d, err := New(&i2ctest.Playback{Ops: ops(m)})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d.Sense(); err == nil || !strings.HasPrefix(err.Error(), "aht20: ") {
		t.Errorf("Sense() with a bad CRC = %+v, %v; want an aht20 error", v, err)
	}
}

func TestNoChip(t *testing.T) {
	if _, err := New(&i2ctest.Playback{DontPanic: true}); err == nil || !strings.HasPrefix(err.Error(), "aht20: playback at 0x38: ") {
		t.Errorf("New(no chip) error = %v", err)
	}
}
