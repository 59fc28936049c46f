package sampler

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// bme280Playback is the register traffic of a BME280 at 0x76 being
// initialised and then read reads times (calibration and raw values of the
// Bosch datasheet example: 25.08 °C), after which the chip stops answering.
func bme280Playback(reads int) *i2ctest.Playback {
	calib := []byte{
		0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, // dig_T1..T3 = 27504, 26435, -1000
		0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27, 0x0B, 0x8C, 0x00, // dig_P1..P5
		0xF9, 0xFF, 0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17, // dig_P6..P9
		0x00, 0x4B, // unused, dig_H1 = 75
	}
	ops := []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xD0}, R: []byte{0x60}},
		{Addr: 0x76, W: []byte{0x88}, R: calib},
		{Addr: 0x76, W: []byte{0xE1}, R: []byte{0x6E, 0x01, 0x00, 0x13, 0x05, 0x00, 0x1E}},
		{Addr: 0x76, W: []byte{0xF4, 0x24, 0xF2, 0x01, 0xF5, 0xA0, 0xF4, 0x24}},
	}
	for range reads {
		ops = append(ops,
			i2ctest.IO{Addr: 0x76, W: []byte{0xF4, 0x25}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xF3}, R: []byte{0x00}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xF7}, R: []byte{0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x69, 0x78}})
	}
	return &i2ctest.Playback{Ops: ops, DontPanic: true}
}

func TestBME280ReopenedAfterBusErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var opened []string
		openI2C := func(bus string) (i2c.BusCloser, error) {
			mu.Lock()
			defer mu.Unlock()
			opened = append(opened, bus)
			return bme280Playback(2), nil // two good reads per open
		}
		sink := &memSink{}
		logs := newLogCounter()
		s, err := New(specs(t, `[{name: greenhouse, driver: bme280, bus: "1", interval: 1s}]`), sink,
			Options{Logger: slog.New(logs), OpenI2C: openI2C})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 9450*time.Millisecond)
		defer cancel()
		s.Run(ctx)
		// Reads at 0 and 1 s succeed, 2 s fails (close), 3 s re-opens and
		// reads, 4 s reads, 5 s fails, 6 and 7 s read, 8 s fails, 9 s reads.
		if len(opened) != 4 || opened[0] != "1" {
			t.Errorf("bus opened %d times (%v); want 4 times bus 1", len(opened), opened)
		}
		got := sink.bySensor()
		for _, name := range []string{"greenhouse.temperature", "greenhouse.pressure", "greenhouse.humidity"} {
			if got[name] != 7 {
				t.Errorf("%s: %d samples; want 7 (all: %v)", name, got[name], got)
			}
		}
		for _, x := range sink.samples {
			if x.Sensor == "greenhouse.temperature" && (x.Value != 25.08 || x.Unit != "C") {
				t.Errorf("temperature sample = %+v; want 25.08 C", x)
			}
			if x.Sensor == "greenhouse.pressure" && (math.Abs(x.Value-1006.53) > 0.01 || x.Unit != "hPa") {
				t.Errorf("pressure sample = %+v; want 1006.53 hPa", x)
			}
		}
		st := s.Status()[0]
		if st.Errors != 3 || st.Device != "BME280 on playback at 0x76" {
			t.Errorf("status = %+v; want 3 errors and the device named", st)
		}
		if a, b := logs.get("greenhouse", "sensor failing; retrying with backoff"), logs.get("greenhouse", "sensor recovered"); a != 3 || b != 3 {
			t.Errorf("failing logged %d, recovered %d; want 3 and 3 (one per outage)", a, b)
		}
	})
}

// TestI2CDriversThroughSampler reads each I²C driver once through the
// sampler, on a playback of its register traffic, and checks the samples'
// names, units and values as they go to the spool.
func TestI2CDriversThroughSampler(t *testing.T) {
	aht20Data := []byte{0x1C, 0x80, 0x00, 0x06, 0x00, 0x00}
	aht20Data = append(aht20Data, crc8AHT20(aht20Data))
	for _, tc := range []struct {
		name, config string
		ops          []i2ctest.IO
		want         map[string]float64 // sample name → value
		units        map[string]string
	}{
		{
			"ads1x15", `[{name: soil, driver: ads1x15, bus: 1, address: 0x49, channels: [{name: moisture, input: 0, scale: -62.5, offset: 175, unit: "%"}]}]`,
			[]i2ctest.IO{
				{Addr: 0x49, W: []byte{0x01, 0xC3, 0x83}},
				{Addr: 0x49, W: []byte{0x00}, R: []byte{0x40, 0x00}}, // 2.048 V
			},
			map[string]float64{"soil.moisture": 47}, map[string]string{"soil.moisture": "%"},
		},
		{
			"mcp9808", `[{name: probe, driver: mcp9808, bus: 1}]`,
			[]i2ctest.IO{
				{Addr: 0x18, W: []byte{0x08, 0x03}},
				{Addr: 0x18, W: []byte{0x01, 0x00, 0x00}},
				{Addr: 0x18, W: []byte{0x05}, R: []byte{0xC1, 0x94}},
				{Addr: 0x18, W: []byte{0x01, 0x01, 0x00}},
			},
			map[string]float64{"probe.temperature": 25.25}, map[string]string{"probe.temperature": "C"},
		},
		{
			"ina219", `[{name: solar, driver: ina219, bus: 1}]`,
			[]i2ctest.IO{
				{Addr: 0x40, W: []byte{0x05, 0x10, 0x62}},
				{Addr: 0x40, W: []byte{0x00, 0x1F, 0xFF}},
				{Addr: 0x40, W: []byte{0x01}, R: []byte{0x0F, 0xA0}},
				{Addr: 0x40, W: []byte{0x02}, R: []byte{0x5D, 0xC2}},
				{Addr: 0x40, W: []byte{0x04}, R: []byte{0x10, 0x00}},
				{Addr: 0x40, W: []byte{0x03}, R: []byte{0x09, 0x9A}},
			},
			map[string]float64{"solar.voltage": 12, "solar.current": 0.4, "solar.power": 4.8},
			map[string]string{"solar.voltage": "V", "solar.current": "A", "solar.power": "W"},
		},
		{
			"aht20", `[{name: room, driver: aht20, bus: 1}]`,
			[]i2ctest.IO{
				{Addr: 0x38, W: []byte{0x71}, R: []byte{0x1C}},
				{Addr: 0x38, W: []byte{0xAC, 0x33, 0x00}},
				{Addr: 0x38, R: aht20Data},
			},
			map[string]float64{"room.temperature": 25, "room.humidity": 50},
			map[string]string{"room.temperature": "C", "room.humidity": "%"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := &i2ctest.Playback{Ops: tc.ops, DontPanic: true}
				sink := &memSink{}
				s, err := New(specs(t, tc.config), sink, Options{OpenI2C: func(string) (i2c.BusCloser, error) { return bus, nil }})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
				defer cancel()
				s.Run(ctx)
				if len(sink.samples) != len(tc.want) {
					t.Fatalf("samples = %+v; want %d", sink.samples, len(tc.want))
				}
				for _, x := range sink.samples {
					if math.Abs(x.Value-tc.want[x.Sensor]) > 0.005 || x.Unit != tc.units[x.Sensor] {
						t.Errorf("sample %s = %v %s; want %v %s", x.Sensor, x.Value, x.Unit, tc.want[x.Sensor], tc.units[x.Sensor])
					}
				}
				if err := bus.Close(); err != nil {
					t.Errorf("register traffic not as recorded: %v", err)
				}
			})
		})
	}
}

// crc8AHT20 is the AHT20 datasheet's CRC-8 (x⁸+x⁵+x⁴+1, initial 0xFF).
func crc8AHT20(b []byte) byte {
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
