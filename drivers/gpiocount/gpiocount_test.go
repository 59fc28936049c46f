package gpiocount

import (
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// fakeClock returns the times it is given, in order, one per call.
type fakeClock struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.times[0]
	if len(c.times) > 1 {
		c.times = c.times[1:]
	}
	return t
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

func TestCountDebounceRate(t *testing.T) {
	// New reads the clock once, each edge once, Read once.
	edges := []int{1000, 1002, 1004, 1030, 1031, 1100, 59000}
	times := []time.Time{t0}
	for _, e := range edges {
		times = append(times, ms(e))
	}
	times = append(times, ms(60000))
	clock := &fakeClock{times: times}

	pin := &gpiotest.Pin{N: "GPIO17", Num: 17, EdgesChan: make(chan gpio.Level)}
	d, err := newDev(pin, Opts{Debounce: 10 * time.Millisecond, Scale: 0.2794}, clock.now)
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	if pin.P != gpio.PullUp {
		t.Errorf("pull = %v; want the default pull-up", pin.P)
	}
	for range edges {
		pin.EdgesChan <- gpio.Low // unbuffered: returns once the counter took it
	}
	if err := d.Close(); err != nil { // waits for the watcher: every edge is counted
		t.Fatalf("Close error = %v", err)
	}
	v := d.Read()
	// 1000, 1030, 1100, 59000 count; 1002, 1004 (< 10 ms after 1000) and
	// 1031 are bounce.
	if v.Pulses != 4 || v.Total != 4 || v.Interval != time.Minute {
		t.Errorf("Read = %+v; want 4 pulses over 1m", v)
	}
	if math.Abs(v.Count-4*0.2794) > 1e-9 || math.Abs(v.Rate-4*0.2794/60) > 1e-9 {
		t.Errorf("Read = %+v; want count 1.1176 (mm) and rate 0.018627 per second", v)
	}
	if v := d.Read(); v.Pulses != 0 || v.Total != 4 {
		t.Errorf("second Read = %+v; want 0 pulses, total 4", v)
	}
}

func TestCountEveryEdge(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO27", Num: 27, EdgesChan: make(chan gpio.Level)}
	d, err := New(pin, Opts{Edge: gpio.RisingEdge, Pull: gpio.PullDown})
	if err != nil {
		t.Fatalf("New error = %v", err)
	}
	for range 250 {
		pin.EdgesChan <- gpio.High
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if v := d.Read(); v.Pulses != 250 || v.Count != 250 {
		t.Errorf("Read = %+v; want 250 pulses, count 250", v)
	}
	if got, want := d.String(), "gpiocount(GPIO27(27))"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	// gpiotest refuses edge detection without an edge channel: the error
	// is the pin's, prefixed.
	if _, err := New(&gpiotest.Pin{N: "GPIO4"}, Opts{}); err == nil {
		t.Error("New(pin without edges) error = nil; want an error")
	}
	if _, err := New(&gpiotest.Pin{N: "GPIO4", EdgesChan: make(chan gpio.Level)}, Opts{Debounce: -1}); err == nil {
		t.Error("New(debounce -1) error = nil; want an error")
	}
}

func TestOpenWithoutGPIOChip(t *testing.T) {
	if m, _ := filepath.Glob("/dev/gpiochip*"); len(m) > 0 {
		t.Skip("this machine has GPIO chips")
	}
	_, err := Open("", "GPIO17", Opts{})
	if err == nil || !strings.Contains(err.Error(), `no GPIO line "GPIO17"`) {
		t.Errorf("Open(GPIO17) error = %v; want no such line", err)
	}
	if _, err := Open("gpiochip0", "17", Opts{}); err == nil || !strings.Contains(err.Error(), "on gpiochip0") {
		t.Errorf("Open(gpiochip0, 17) error = %v; want no such line on gpiochip0", err)
	}
}
