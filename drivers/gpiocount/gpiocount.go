package gpiocount

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/host/v3/gpioioctl"
)

// Opts configures a counter.
type Opts struct {
	// Edge counted: gpio.FallingEdge (the default, for a switch to ground
	// with a pull-up), gpio.RisingEdge or gpio.BothEdges.
	Edge gpio.Edge
	// Pull of the input: gpio.PullUp (the default), gpio.PullDown,
	// gpio.Float or gpio.PullNoChange.
	Pull gpio.Pull
	// Debounce is the shortest time between two counted edges; 0 counts
	// every edge.
	Debounce time.Duration
	// Scale converts one pulse to the reported unit; 0 means 1.
	Scale float64
}

// Values is what a Read reports.
type Values struct {
	Pulses   uint64        // pulses counted since the previous Read
	Count    float64       // Pulses × Scale
	Rate     float64       // Count per second over Interval
	Interval time.Duration // since the previous Read (or since New)
	Total    uint64        // pulses counted since New
}

// Dev counts pulses on one input.
type Dev struct {
	pin  gpio.PinIn
	opts Opts
	now  func() time.Time // time.Now, or a test's clock

	mu       sync.Mutex
	pulses   uint64
	total    uint64
	lastEdge time.Time
	lastRead time.Time

	stop atomic.Bool
	done chan struct{}
}

// waitSlice bounds each wait for an edge so that Close is prompt even on
// pins whose Halt cannot interrupt a wait.
const waitSlice = 100 * time.Millisecond

// New configures pin as an input with edge detection and starts counting.
func New(pin gpio.PinIn, opts Opts) (*Dev, error) {
	return newDev(pin, opts, time.Now)
}

func newDev(pin gpio.PinIn, opts Opts, now func() time.Time) (*Dev, error) {
	if opts.Edge == gpio.NoEdge {
		opts.Edge = gpio.FallingEdge
	}
	if opts.Pull == 0 { // gpio.Float is 0; the default is a pull-up
		opts.Pull = gpio.PullUp
	}
	if opts.Scale == 0 {
		opts.Scale = 1
	}
	if opts.Debounce < 0 || math.IsNaN(opts.Scale) || math.IsInf(opts.Scale, 0) {
		return nil, fmt.Errorf("gpiocount: %s: debounce must be >= 0 and scale finite", pin)
	}
	if err := pin.In(opts.Pull, opts.Edge); err != nil {
		return nil, fmt.Errorf("gpiocount: %s: %w", pin, err)
	}
	d := &Dev{pin: pin, opts: opts, now: now, done: make(chan struct{})}
	d.lastRead = now()
	go d.watch()
	return d, nil
}

// Open opens line through the GPIO character device and counts on it; it
// is Lookup then New.
func Open(chip, line string, opts Opts) (*Dev, error) {
	pin, err := Lookup(chip, line)
	if err != nil {
		return nil, err
	}
	return New(pin, opts)
}

// Lookup finds a line of the GPIO character device: line is its name as
// the kernel reports it (e.g. "GPIO17" on a Raspberry Pi, see gpioinfo),
// looked up on chip (e.g. "gpiochip0") or, if chip is "", on every chip;
// with a chip, line may also be an offset on it.
func Lookup(chip, line string) (gpio.PinIO, error) {
	if _, err := driverreg.Init(); err != nil {
		return nil, fmt.Errorf("gpiocount: %w", err)
	}
	n, numErr := strconv.Atoi(line)
	for _, c := range gpioioctl.Chips {
		if chip != "" && c.Name() != chip {
			continue
		}
		if l := c.ByName(line); l != nil {
			return l, nil
		}
		if chip != "" && numErr == nil && n >= 0 && n < c.LineCount() {
			return c.ByNumber(n), nil
		}
	}
	return nil, fmt.Errorf("gpiocount: no GPIO line %q%s (is /dev/gpiochip* readable by this user, in group gpio? see gpioinfo)", line, onChip(chip))
}

func onChip(chip string) string {
	if chip == "" {
		return ""
	}
	return " on " + chip
}

func (d *Dev) watch() {
	defer close(d.done)
	for !d.stop.Load() {
		start := time.Now()
		if !d.pin.WaitForEdge(waitSlice) {
			// A pin in error returns at once: do not spin.
			if time.Since(start) < waitSlice/2 && !d.stop.Load() {
				time.Sleep(waitSlice)
			}
			continue
		}
		t := d.now()
		d.mu.Lock()
		if d.opts.Debounce == 0 || d.total == 0 || t.Sub(d.lastEdge) >= d.opts.Debounce {
			d.pulses++
			d.total++
			d.lastEdge = t
		}
		d.mu.Unlock()
	}
}

// String returns e.g. "gpiocount(GPIO17)".
func (d *Dev) String() string { return "gpiocount(" + d.pin.String() + ")" }

// Read returns the pulses since the previous Read and resets that count.
func (d *Dev) Read() Values {
	t := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	v := Values{Pulses: d.pulses, Total: d.total, Interval: t.Sub(d.lastRead)}
	v.Count = float64(v.Pulses) * d.opts.Scale
	if s := v.Interval.Seconds(); s > 0 {
		v.Rate = v.Count / s
	}
	d.pulses = 0
	d.lastRead = t
	return v
}

// Halt stops counting and releases the line; it is the same as Close.
func (d *Dev) Halt() error { return d.Close() }

// Close stops counting and releases the line. Counts already made can
// still be Read.
func (d *Dev) Close() error {
	if d.stop.Swap(true) {
		return nil
	}
	err := d.pin.Halt() // interrupts a pending wait where the pin can
	<-d.done
	if c, ok := d.pin.(interface{ Close() }); ok {
		c.Close()
	}
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("gpiocount: %s: %w", d.pin, err)
	}
	return nil
}

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
