package sampler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/drivers/gpiocount"
	"github.com/outpost-iot/outpost/internal/reading"
)

// Clock stamps readings. The daemon passes its own, which knows whether
// the wall clock is synchronised; tests pass a fake.
type Clock interface {
	// Stamp reads the wall clock and CLOCK_BOOTTIME at one moment, and
	// says whether the wall clock was synchronised then.
	Stamp() Stamp
}

// Stamp is when a reading was taken: the wall clock, CLOCK_BOOTTIME (the
// time since boot, suspend included, from which a later-known clock offset
// gives the true time of a reading taken before the clock was
// synchronised) and whether the wall clock was synchronised. Time and
// Unsynced go into the reading; BootTime goes beside it to the Sink.
type Stamp struct {
	Time     time.Time
	BootTime time.Duration
	Unsynced bool
}

// systemClock is the default Clock: the system's wall clock and
// CLOCK_BOOTTIME, never flagged unsynced.
type systemClock struct{}

func (systemClock) Stamp() Stamp { return Stamp{Time: time.Now(), BootTime: bootTime()} }

// Sink takes the stamped readings: the spool (*spool.Spool is one). r has
// its Sensor ("<sensor name>.<measurement>", e.g.
// "greenhouse.temperature"), Unit, Value, Labels (nil or shared between
// readings: a Sink must not modify them), Time (UTC) and Unsynced set;
// bootTime is CLOCK_BOOTTIME when it was taken. Append may block
// (back-pressure); an error is counted and logged once per change, and the
// sampler carries on.
type Sink interface {
	Append(ctx context.Context, r reading.Reading, bootTime time.Duration) (uint64, error)
}

// sensor is what the sampler needs of an open sensor. The drivers return
// concrete types; the small adapters in driver_*.go make them sensors,
// turning each driver's values into readings.
type sensor interface {
	String() string
	// Read appends the sensor's readings to dst, each with its Sensor,
	// Unit and Value (and Labels, if any) set; the sampler stamps them.
	// With an error it may still return some (several probes on one bus,
	// one of them failing); with an error and none, the sensor is
	// re-opened after a backoff.
	Read(ctx context.Context, dst []reading.Reading) ([]reading.Reading, error)
	Close() error
}

// Options configures a Sampler. The zero value is ready for a live system.
type Options struct {
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
	// SysRoot is where sysfs is mounted; "" means "/sys". Tests point it at
	// a testdata tree.
	SysRoot string
	// OpenI2C opens an I²C bus by its config name ("1" for /dev/i2c-1);
	// nil opens the Linux character device.
	OpenI2C func(bus string) (i2c.BusCloser, error)
	// openGPIO finds a GPIO line; nil uses the character device. Tests
	// set it.
	openGPIO func(chip, line string) (gpio.PinIO, error)
	// Clock stamps each read; nil means the system clocks, with readings
	// never flagged unsynced.
	Clock Clock
	// MaxBackoff caps the wait before a failed sensor is retried; 0 means
	// one minute (or the sensor's interval if longer).
	MaxBackoff time.Duration
}

// env is what opening a sensor may need of the host.
type env struct {
	clock    Clock
	sysRoot  string
	openI2C  func(bus string) (i2c.BusCloser, error)
	openGPIO func(chip, line string) (gpio.PinIO, error)
}

// Sampler runs a set of sensors.
type Sampler struct {
	runners []*runner
	log     *slog.Logger

	mu      sync.Mutex
	running bool
}

// New prepares the sensors of specs (from DecodeSensors) to feed sink. It
// opens nothing: Run does, and retries what fails.
func New(specs []SensorSpec, sink Sink, opts Options) (*Sampler, error) {
	if sink == nil {
		return nil, errors.New("sampler: nil sink")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &env{clock: opts.Clock, sysRoot: opts.SysRoot, openI2C: opts.OpenI2C, openGPIO: opts.openGPIO}
	if e.clock == nil {
		e.clock = systemClock{}
	}
	if e.sysRoot == "" {
		e.sysRoot = "/sys"
	}
	if e.openI2C == nil {
		e.openI2C = openI2CDev
	}
	if e.openGPIO == nil {
		e.openGPIO = gpiocount.Lookup
	}
	s := &Sampler{log: log}
	seen := map[string]bool{}
	for _, spec := range specs {
		d, ok := drivers[spec.Driver]
		if !ok || spec.opts == nil {
			return nil, fmt.Errorf("sampler: sensor %q: not decoded by DecodeSensor (driver %q)", spec.Name, spec.Driver)
		}
		if seen[spec.Name] {
			return nil, fmt.Errorf("sampler: two sensors named %q", spec.Name)
		}
		seen[spec.Name] = true
		maxBackoff := opts.MaxBackoff
		if maxBackoff <= 0 {
			maxBackoff = time.Minute
		}
		s.runners = append(s.runners, newRunner(spec, d.open, e, sink, log.With("sensor", spec.Name, "driver", spec.Driver), maxBackoff))
	}
	return s, nil
}

// Run samples until ctx is done, then closes every sensor and returns
// nil once all of its goroutines have ended. A Sampler runs once.
func (s *Sampler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("sampler: already run")
	}
	s.running = true
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range s.runners {
		wg.Go(func() { r.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Status returns the status of every sensor, in config order.
func (s *Sampler) Status() []SensorStatus {
	out := make([]SensorStatus, len(s.runners))
	for i, r := range s.runners {
		out[i] = r.statusCopy()
	}
	return out
}

// Stuck returns the names of the sensors whose current open or read has
// lasted longer than limit (a driver hung in a system call). The daemon's
// watchdog uses it: a sensor that keeps failing is not stuck, one that
// never returns is.
func (s *Sampler) Stuck(limit time.Duration) []string {
	var out []string
	now := time.Now().UnixNano()
	for _, r := range s.runners {
		if t := r.busySince.Load(); t != 0 && time.Duration(now-t) > limit {
			out = append(out, r.spec.Name)
		}
	}
	return out
}
