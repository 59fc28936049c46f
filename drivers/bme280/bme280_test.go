package bme280

import (
	"errors"
	"math"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
)

// Calibration and raw values from the BMP280 datasheet (BST-BMP280-DS001),
// §3.12 "Calibration computation example"; the BME280 has the same
// temperature and pressure compensation.
const (
	digT1, digT2, digT3               = 27504, 26435, -1000
	digP1, digP2, digP3, digP4, digP5 = 36477, -10685, 3024, 2855, 140
	digP6, digP7, digP8, digP9        = -7, 15500, -14600, 6000
	adcT, adcP                        = 519888, 415148
	// Humidity calibration of a BME280 (registers 0xA1, 0xE1–0xE7) and a raw
	// reading; the expected value is computed below with the datasheet's
	// floating-point formula (BST-BME280-DS002 §8.1).
	digH1, digH2, digH3, digH4, digH5, digH6 = 75, 366, 0, 309, 0, 30
	adcH                                     = 27000
)

func le16(v int) []byte { return []byte{byte(v), byte(v >> 8)} }

// calib is the content of registers 0x88–0xA1.
func calib() []byte {
	var b []byte
	for _, v := range []int{digT1, digT2, digT3, digP1, digP2, digP3, digP4, digP5, digP6, digP7, digP8, digP9} {
		b = append(b, le16(v)...)
	}
	return append(b, 0x00, digH1) // 0xA0 unused, 0xA1 dig_H1
}

// calibH is the content of registers 0xE1–0xE7.
func calibH() []byte {
	h2, h4, h5 := digH2, digH4, digH5
	return []byte{
		byte(h2), byte(h2 >> 8), digH3,
		byte(h4 >> 4), byte(h4&0xF) | byte(h5&0xF)<<4, byte(h5 >> 4),
		digH6,
	}
}

// raw is the content of registers 0xF7–0xFE: press, temp (20 bits each,
// left-aligned in three bytes), hum (16 bits).
func raw(humidity bool) []byte {
	p, t, h := adcP, adcT, adcH
	b := []byte{
		byte(p >> 12), byte(p >> 4), byte(p<<4) & 0xF0,
		byte(t >> 12), byte(t >> 4), byte(t<<4) & 0xF0,
	}
	if humidity {
		b = append(b, byte(h>>8), byte(h))
	}
	return b
}

// datasheetHumidity is the BME280 datasheet's double-precision humidity
// compensation (BST-BME280-DS002 §8.1), with t_fine from the temperature.
func datasheetHumidity() float64 {
	v1 := (float64(adcT)/16384 - float64(digT1)/1024) * float64(digT2)
	v2 := (float64(adcT)/131072 - float64(digT1)/8192) * (float64(adcT)/131072 - float64(digT1)/8192) * float64(digT3)
	tFine := v1 + v2
	h := tFine - 76800
	h = (float64(adcH) - (float64(digH4)*64 + float64(digH5)/16384*h)) *
		(float64(digH2) / 65536 * (1 + float64(digH6)/67108864*h*(1+float64(digH3)/67108864*h)))
	h *= 1 - float64(digH1)*h/524288
	return math.Max(0, math.Min(100, h))
}

const addr = 0x76

func bme280Ops() []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xD0}, R: []byte{0x60}}, // chip id: BME280
		{Addr: addr, W: []byte{0x88}, R: calib()},
		{Addr: addr, W: []byte{0xE1}, R: calibH()},
		// ctrl_meas sleep with osrs_t = osrs_p = 1×, ctrl_hum osrs_h = 1×,
		// config t_sb = 1 s, filter off, ctrl_meas again (written last).
		{Addr: addr, W: []byte{0xF4, 0x24, 0xF2, 0x01, 0xF5, 0xA0, 0xF4, 0x24}},
	}
}

func senseOps(humidity bool) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xF4, 0x25}},             // forced mode
		{Addr: addr, W: []byte{0xF3}, R: []byte{0x00}},  // status: not measuring
		{Addr: addr, W: []byte{0xF7}, R: raw(humidity)}, // burst read
	}
}

func TestBME280DatasheetExample(t *testing.T) {
	bus := &i2ctest.Playback{Ops: append(bme280Ops(), senseOps(true)...)}
	d, err := New(bus, addr)
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	if got, want := d.String(), "BME280 on playback at 0x76"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	v, err := d.Sense()
	if err != nil {
		t.Fatalf("Sense error = %v", err)
	}
	// Datasheet: T = 25.08 °C (t_fine 128422) and p = 100653.27 Pa. The
	// integer formula periph uses gives 25767233/256 = 100653.254 Pa and the
	// datasheet's own double formula 100653.258 Pa: within 0.05 Pa.
	if v.Temperature != 25.08 {
		t.Errorf("Temperature = %v; want 25.08", v.Temperature)
	}
	if math.Abs(v.Pressure-1006.5327) > 0.0005 {
		t.Errorf("Pressure = %v hPa; want 1006.5327 ± 0.0005", v.Pressure)
	}
	want := datasheetHumidity()
	if !v.HasHumidity || math.Abs(v.Humidity-want) > 0.01 {
		t.Errorf("Humidity = %v (has %v); want %.4f from the datasheet formula", v.Humidity, v.HasHumidity, want)
	}
	if want < 10 || want > 90 {
		t.Fatalf("test setup: datasheet humidity %v is not a plausible reading", want)
	}
	if err := d.Halt(); err != nil {
		t.Errorf("Halt error = %v", err)
	}
	if err := bus.Close(); err != nil {
		t.Errorf("playback not fully consumed: %v", err)
	}
}

func TestBMP280HasNoHumidity(t *testing.T) {
	ops := []i2ctest.IO{
		{Addr: addr, W: []byte{0xD0}, R: []byte{0x58}}, // chip id: BMP280
		{Addr: addr, W: []byte{0x88}, R: calib()},
		{Addr: addr, W: []byte{0xF4, 0x24, 0xF5, 0xA0, 0xF4, 0x24}},
	}
	bus := &i2ctest.Playback{Ops: append(ops, senseOps(false)...)}
	d, err := New(bus, addr)
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	if d.Chip() != "BMP280" {
		t.Errorf("Chip() = %q; want BMP280", d.Chip())
	}
	v, err := d.Sense()
	if err != nil || v.HasHumidity || v.Temperature != 25.08 || math.Abs(v.Pressure-1006.5327) > 0.0005 {
		t.Errorf("Sense() = %+v, %v; want 25.08 °C, 1006.5327 hPa, no humidity", v, err)
	}
	if err := bus.Close(); err != nil {
		t.Errorf("playback not fully consumed: %v", err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := New(&i2ctest.Playback{}, 0x48); err == nil || !strings.HasPrefix(err.Error(), "bme280: ") {
		t.Errorf("New(0x48) error = %v; want a bme280 error", err)
	}
	// Nothing answers the chip id read (the playback has no ops): a NACK.
	_, err := New(&i2ctest.Playback{DontPanic: true}, addr)
	var e *Error
	if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), "bme280: ") || strings.Count(err.Error(), "bme280") != 1 {
		t.Errorf("New(no device) error = %v; want one *Error prefixed bme280", err)
	}
	// An unknown chip id.
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: addr, W: []byte{0xD0}, R: []byte{0x99}}}}
	if _, err := New(bus, addr); err == nil || !strings.Contains(err.Error(), "chip id") {
		t.Errorf("New(chip id 0x99) error = %v; want an unexpected chip id error", err)
	}
	// The chip stops answering after initialisation.
	bus = &i2ctest.Playback{Ops: bme280Ops(), DontPanic: true}
	d, err := New(bus, addr)
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	if v, err := d.Sense(); err == nil || !strings.HasPrefix(err.Error(), "bme280: BME280 on playback at 0x76: ") {
		t.Errorf("Sense() on a silent bus = %+v, %v; want a bme280 error naming the chip", v, err)
	}
}
