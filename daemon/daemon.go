package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/daemon/config"
	"github.com/outpost-iot/outpost/daemon/sampler"
	"github.com/outpost-iot/outpost/spool"
	"github.com/outpost-iot/outpost/uplink"
)

// Options are what `outpost daemon` passes in; signals stay in main.
type Options struct {
	ConfigPath string
	Version    string
	Stderr     io.Writer
	// Reload delivers SIGHUP: re-read the configuration.
	Reload <-chan struct{}
	// BootIDFile is /proc/sys/kernel/random/boot_id unless a test says
	// otherwise.
	BootIDFile string
	// ShutdownTimeout bounds committing what is pending at exit (default
	// 15s, inside the unit's TimeoutStopSec).
	ShutdownTimeout time.Duration

	// clock is where the daemon reads the time and whether it is
	// synchronised: the system's unless a test passes a fake.
	clock clockSource
	// clockEvery is how often the clock is checked for a sync or a step
	// (default 1s).
	clockEvery time.Duration
}

// Daemon is the running edge daemon: sampler → spool → uplink.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	level   *slog.LevelVar
	spool   *spool.Spool
	boot    spool.BootID
	started time.Time
	clock   *clock
	watch   *component // the clock watch

	mu     sync.Mutex
	cfg    *config.Config
	sample *component // the sampler
	upl    *component // the drainer and heartbeat
	smp    *sampler.Sampler
	drain  *uplink.Drainer
}

// component is a group of goroutines started and stopped together.
type component struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func start(parent context.Context, run func(ctx context.Context)) *component {
	ctx, cancel := context.WithCancel(parent)
	c := &component{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		run(ctx)
	}()
	return c
}

func (c *component) stop() {
	if c != nil {
		c.cancel()
		<-c.done
	}
}

// Run is `outpost daemon`: it runs until ctx ends (SIGTERM), then stops
// sampling, commits what is pending and returns nil.
func Run(ctx context.Context, o Options) error {
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.BootIDFile == "" {
		o.BootIDFile = "/proc/sys/kernel/random/boot_id"
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 15 * time.Second
	}
	if o.clock == nil {
		o.clock = systemClock{bootIDFile: o.BootIDFile, timesyncdFlag: "/run/systemd/timesync/synchronized"}
	}
	if o.clockEvery <= 0 {
		o.clockEvery = time.Second
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	if l, err := ParseLevel(cfg.Log.Level); err == nil {
		level.Set(l)
	}
	d := &Daemon{opts: o, log: NewLogger(o.Stderr, level, "outpost"), level: level, cfg: cfg, started: time.Now()}
	return d.run(ctx)
}

func (d *Daemon) run(ctx context.Context) error {
	cfg := d.cfg
	d.log.Info("starting", "version", d.opts.Version, "device", cfg.Device, "config", d.opts.ConfigPath)
	for _, w := range cfg.Warnings() {
		d.log.Warn(w)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Spool.Path), 0o750); err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	policy, err := spool.ParsePolicy(cfg.Spool.Policy)
	if err != nil {
		return err
	}
	// The clock first: it reads the boot id, which the spool stores with
	// each reading's boot time. It has the spool to record offsets in
	// once that is open.
	d.clock = newClock(d.opts.clock, nil, d.log.With("component", "clock"))
	d.boot = d.clock.boot
	d.spool, err = spool.Open(spool.Options{
		Path:           cfg.Spool.Path,
		Device:         cfg.Device,
		Boot:           d.boot,
		CommitInterval: cfg.Spool.CommitInterval,
		MaxBytes:       int64(cfg.Spool.MaxBytes),
		MaxAge:         cfg.Spool.MaxAge,
		Policy:         policy,
		Logger:         d.log.With("component", "spool"),
	})
	if err != nil {
		return fmt.Errorf("opening the spool: %w", err)
	}
	if st, err := d.spool.Stats(); err == nil {
		d.log.Info("spool open", "path", st.Path, "stream", st.Stream.String(), "readings", st.Readings, "quarantined", st.Quarantined)
	}

	// A context the components share, which outlives ctx so shutdown can
	// stop them in order.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	// The clock before the sampler, so the first readings are stamped
	// right; the watch records the offset (one learnt while the daemon was
	// down too) without holding up the start.
	d.clock.store = d.spool
	d.clock.observe()
	d.watch = start(life, func(ctx context.Context) { d.clock.watch(ctx, d.opts.clockEvery) })
	d.startSampler(life, cfg)
	if err := d.startUplink(life, cfg); err != nil {
		d.log.Error("uplink not started; readings stay in the spool", "err", err)
	}
	status, err := d.serveStatus(cfg.Status.Socket)
	if err != nil {
		d.log.Error("status socket not available", "path", cfg.Status.Socket, "err", err)
	}
	notify("READY=1")
	sup := start(life, d.supervise) // after READY: WATCHDOG=1 and STATUS= follow it
	d.log.Info("started", "sensors", len(cfg.Sensors), "uplink", d.uplinkName(cfg))

	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping", "cause", context.Cause(ctx))
			notify("STOPPING=1")
			return d.shutdown(sup, status)
		case <-d.opts.Reload:
			d.reload(life)
		}
	}
}

// shutdown stops sampling, lets in-flight sends end (unacknowledged
// batches are sent again next time), and commits what is pending.
func (d *Daemon) shutdown(sup *component, status io.Closer) error {
	d.mu.Lock()
	smp, upl := d.sample, d.upl
	d.mu.Unlock()
	smp.stop()
	upl.stop()
	sup.stop()
	d.watch.stop()
	if status != nil {
		status.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownTimeout)
	defer cancel()
	if err := d.spool.Close(ctx); err != nil {
		return fmt.Errorf("closing the spool: %w", err)
	}
	d.log.Info("stopped")
	return nil
}

func (d *Daemon) startSampler(life context.Context, cfg *config.Config) {
	specs := make([]sampler.SensorSpec, len(cfg.Sensors))
	for i, b := range cfg.Sensors {
		specs[i] = b.Spec
	}
	smp, err := sampler.New(specs, d.spool,
		sampler.Options{Logger: d.log.With("component", "sampler"), Clock: d.clock})
	if err != nil {
		d.log.Error("sampler not started", "err", err)
		return
	}
	d.mu.Lock()
	d.smp = smp
	d.sample = start(life, func(ctx context.Context) { smp.Run(ctx) })
	d.mu.Unlock()
}

func (d *Daemon) uplinkName(cfg *config.Config) string {
	switch {
	case !cfg.UplinkConfigured():
		return "none"
	case cfg.Uplink.Kind == "mqtt":
		return "mqtt " + config.RedactURL(cfg.Uplink.MQTT.Broker)
	default:
		return "http " + config.RedactURL(cfg.Uplink.HTTP.URL)
	}
}

// sender is what the daemon needs of an uplink transport.
type sender interface {
	uplink.Sender
	SendStatus(ctx context.Context, heartbeat []byte) error
	Close()
}

func (d *Daemon) newSender(cfg *config.Config) (sender, error) {
	u := cfg.Uplink
	if u.Kind == "mqtt" {
		m, err := uplink.NewMQTT(uplink.MQTTOptions{
			Broker: u.MQTT.Broker, Device: cfg.Device, Username: u.MQTT.Username,
			PasswordFile: u.MQTT.PasswordFile, CAFile: u.MQTT.CAFile, Prefix: u.MQTT.Prefix,
			ConfirmBroker: u.MQTT.Confirm == "broker", ReceiptTimeout: u.MQTT.ReceiptTimeout,
			Gzip: true, Logger: d.log.With("component", "uplink"),
		})
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	h, err := uplink.NewHTTP(uplink.HTTPOptions{
		URL: u.HTTP.URL, TokenFile: u.HTTP.TokenFile, CAFile: u.HTTP.CAFile,
		ClientCert: u.HTTP.ClientCert, ClientKey: u.HTTP.ClientKey,
		InFlight: u.Batch.InFlight, UserAgent: "outpost/" + d.opts.Version,
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (d *Daemon) startUplink(life context.Context, cfg *config.Config) error {
	if !cfg.UplinkConfigured() {
		return nil
	}
	s, err := d.newSender(cfg)
	if err != nil {
		return err
	}
	dr := &uplink.Drainer{
		Outbox:      d.spool,
		Sender:      s,
		MaxReadings: cfg.Uplink.Batch.MaxReadings,
		MaxBytes:    int(cfg.Uplink.Batch.MaxBytes),
		InFlight:    cfg.Uplink.Batch.InFlight,
		RateLimit:   cfg.Uplink.RateLimit,
		Logger:      d.log.With("component", "uplink"),
	}
	heartbeat := cfg.Uplink.Heartbeat
	d.mu.Lock()
	d.drain = dr
	d.upl = start(life, func(ctx context.Context) {
		defer s.Close()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.heartbeats(ctx, s, heartbeat)
		}()
		dr.Run(ctx)
		wg.Wait()
	})
	d.mu.Unlock()
	return nil
}

// reload re-reads the configuration. A bad one is logged and the running
// one kept; sensors, uplink and log level change in place; spool settings
// and the device id need a restart.
func (d *Daemon) reload(life context.Context) {
	d.log.Info("reloading the configuration", "config", d.opts.ConfigPath)
	next, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		d.log.Error("new configuration rejected; the running one stays", "err", err)
		return
	}
	d.mu.Lock()
	cur := d.cfg
	d.mu.Unlock()
	if next.Device != cur.Device || next.Spool != cur.Spool {
		d.log.Warn("device and spool settings change only at restart (systemctl restart outpost)")
		next.Device, next.Spool = cur.Device, cur.Spool
	}
	if l, err := ParseLevel(next.Log.Level); err == nil {
		d.level.Set(l)
	}
	if !sameSensors(cur.Sensors, next.Sensors) {
		d.mu.Lock()
		old := d.sample
		d.mu.Unlock()
		old.stop()
		d.startSampler(life, next)
	}
	if !reflect.DeepEqual(cur.Uplink, next.Uplink) {
		d.mu.Lock()
		old := d.upl
		d.upl, d.drain = nil, nil
		d.mu.Unlock()
		old.stop()
		if err := d.startUplink(life, next); err != nil {
			d.log.Error("uplink not started; readings stay in the spool", "err", err)
		}
	}
	d.mu.Lock()
	d.cfg = next
	d.mu.Unlock()
	d.log.Info("configuration reloaded", "sensors", len(next.Sensors), "uplink", d.uplinkName(next))
}

// sameSensors compares sensor entries by what the file says, not where.
func sameSensors(a, b []config.Sensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, errX := yaml.Marshal(a[i].Node)
		y, errY := yaml.Marshal(b[i].Node)
		if errX != nil || errY != nil || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

// Interface guards: the spool is the sampler's sink and the uplink's outbox
// as it is.
var (
	_ sampler.Sink  = (*spool.Spool)(nil)
	_ uplink.Outbox = (*spool.Spool)(nil)
)
