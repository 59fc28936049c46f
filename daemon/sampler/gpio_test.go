package sampler

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

func TestRainGauge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pin := &gpiotest.Pin{N: "GPIO17", Num: 17, EdgesChan: make(chan gpio.Level)}
		var lookups []string
		sink := &memSink{}
		s, err := New(specs(t, `[{name: rain, driver: gpiocount, line: GPIO17, scale: 0.2794, unit: mm, interval: 1s}]`), sink,
			Options{openGPIO: func(chip, line string) (gpio.PinIO, error) {
				lookups = append(lookups, chip+"/"+line)
				return pin, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2450*time.Millisecond)
		defer cancel()
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		synctest.Wait() // opened and read once at 0 s: no sample for an empty interval
		for range 3 {
			pin.EdgesChan <- gpio.Low // three tips in the first second
		}
		<-done
		if len(lookups) != 1 || lookups[0] != "/GPIO17" {
			t.Errorf("lookups = %v; want one of GPIO17", lookups)
		}
		// Reads at 1 s (3 tips) and 2 s (none).
		var counts, rates []float64
		for _, x := range sink.samples {
			switch x.Sensor {
			case "rain.count":
				counts = append(counts, x.Value)
				if x.Unit != "mm" {
					t.Errorf("count unit = %q; want mm", x.Unit)
				}
			case "rain.rate":
				rates = append(rates, x.Value)
				if x.Unit != "mm/s" {
					t.Errorf("rate unit = %q; want mm/s", x.Unit)
				}
			}
		}
		if len(counts) != 2 || math.Abs(counts[0]-3*0.2794) > 1e-9 || counts[1] != 0 {
			t.Errorf("counts = %v; want [0.8382 0]", counts)
		}
		if len(rates) != 2 || math.Abs(rates[0]-3*0.2794) > 1e-9 || rates[1] != 0 {
			t.Errorf("rates = %v; want [0.8382 0] (mm per second over 1 s)", rates)
		}
	})
}

func TestGPIOLineMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := New(specs(t, `[{name: wind, driver: gpiocount, line: GPIO99, interval: 1s}]`), &memSink{},
			Options{openGPIO: func(chip, line string) (gpio.PinIO, error) { return nil, errors.New("no GPIO line") }})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		s.Run(ctx)
		if st := s.Status()[0]; st.Errors != 3 || st.LastError != "no GPIO line" {
			t.Errorf("status = %+v; want 3 failed opens (0, 1, 3 s)", st)
		}
	})
}
