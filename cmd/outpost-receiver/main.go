// The outpost-receiver program is Outpost's cloud side: it serves the
// ingest and query API (the default command, serve), manages device tokens
// (device add|list|revoke|rotate) and migrates the database (migrate).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver"
)

// version is stamped at build time: -ldflags "-X main.version=…".
var version = "0.0.0~dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-receiver:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `Usage: outpost-receiver [command] [flags]

Commands:
  serve               serve the HTTP API (the default)
  device add ID       register a device; prints its new token, alone, on stdout
  device list         list the devices
  device revoke ID    revoke a device's token
  device rotate ID [--grace 24h]
                      give a device a new token, printed alone on stdout; the
                      old one works until the grace ends (a revoked device is
                      reinstated, none of its old tokens works)
  migrate             apply the database migrations and exit
  version             print the version

Flags (every command; a flag not given takes its environment variable, then the default):
`

// flags are the command line. Each flag's environment variable (12-factor)
// applies when the flag is not given: flag, then environment, then default.
type flags struct {
	listen, databaseURL, adminTokenFile string
	maxBodyBytes, maxDecodedBytes       sizeFlag
	maxLineBytes                        sizeFlag
	maxLines                            countFlag
	mqttBroker, mqttClientID            string
	mqttPrefix, mqttGroup               string
	mqttUsername, mqttPasswordFile      string
	tlsCert, tlsKey                     string
	retention                           daysFlag
	grace                               time.Duration     // device rotate
	env                                 map[string]string // flag name → environment variable
}

func newFlagSet(getenv func(string) string, stderr io.Writer) (*flag.FlagSet, *flags) {
	f := &flags{
		maxBodyBytes: receiver.DefaultMaxBodyBytes, maxDecodedBytes: receiver.DefaultMaxDecodedBytes,
		maxLineBytes: reading.DefaultMaxLineBytes, maxLines: receiver.DefaultMaxLines,
		env: map[string]string{},
	}
	fs := flag.NewFlagSet("outpost-receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, env, def, usage string) {
		f.env[name] = env
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	val := func(v flag.Value, name, env, usage string) {
		f.env[name] = env
		fs.Var(v, name, usage+" (env "+env+")")
	}
	host, _ := os.Hostname()
	clientID := "outpost-receiver"
	if host != "" {
		clientID += "-" + host
	}
	str(&f.listen, "listen", "OUTPOST_LISTEN", "127.0.0.1:8080", "HTTP listen address")
	str(&f.databaseURL, "database-url", "DATABASE_URL", "",
		"postgres://… or sqlite:PATH (default SQLite at ./"+receiver.DefaultSQLitePath+")")
	str(&f.adminTokenFile, "admin-token-file", "OUTPOST_ADMIN_TOKEN_FILE", "", "file holding the admin token of the query API")
	val(&f.maxBodyBytes, "max-body-bytes", "OUTPOST_MAX_BODY_BYTES", "largest request body as sent, e.g. 8MiB; larger gets 413")
	val(&f.maxDecodedBytes, "max-decoded-bytes", "OUTPOST_MAX_DECODED_BYTES", "largest batch after gzip decompression (HTTP body or MQTT message); larger gets 413")
	val(&f.maxLineBytes, "max-line-bytes", "OUTPOST_MAX_LINE_BYTES", "longest line of a batch; a longer one gets 400 naming the line")
	val(&f.maxLines, "max-lines", "OUTPOST_MAX_LINES", "most lines in one batch; more gets 413")
	str(&f.mqttBroker, "mqtt-broker", "OUTPOST_MQTT_BROKER", "", "MQTT broker URL (tcp://, ssl://, ws://); MQTT ingest only when set")
	str(&f.mqttClientID, "mqtt-client-id", "OUTPOST_MQTT_CLIENT_ID", clientID, "MQTT client id, one per replica (its persistent session)")
	str(&f.mqttPrefix, "mqtt-prefix", "OUTPOST_MQTT_PREFIX", "outpost", "MQTT topic prefix: <prefix>/<device>/readings")
	str(&f.mqttGroup, "mqtt-group", "OUTPOST_MQTT_GROUP", "outpost-receiver", "MQTT shared-subscription group of the replicas")
	str(&f.mqttUsername, "mqtt-username", "OUTPOST_MQTT_USERNAME", "", "MQTT user name")
	str(&f.mqttPasswordFile, "mqtt-password-file", "OUTPOST_MQTT_PASSWORD_FILE", "", "file holding the MQTT password (not readable by others)")
	str(&f.tlsCert, "tls-cert", "OUTPOST_TLS_CERT", "", "PEM certificate (chain) to serve HTTPS with, re-read when it changes; with --tls-key")
	str(&f.tlsKey, "tls-key", "OUTPOST_TLS_KEY", "", "PEM private key of --tls-cert (a file others may read is refused)")
	val(&f.retention, "retention", "OUTPOST_RETENTION", "delete readings received longer ago than this, e.g. 90d or 720h, in small batches (0: keep forever)")
	fs.DurationVar(&f.grace, "grace", 24*time.Hour, "device rotate: how long the old token keeps working (0: not at all)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs, f
}

// applyEnv sets each flag not given on the command line from its
// environment variable, when that is set.
func (f *flags) applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var errs []error
	fs.VisitAll(func(fl *flag.Flag) {
		env := f.env[fl.Name]
		v := getenv(env)
		if given[fl.Name] || env == "" || v == "" {
			return
		}
		if err := fs.Set(fl.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q of %s for flag --%s: %w", v, env, fl.Name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// serveConfig is the configuration of serve, checked (and the MQTT
// password file read) by its Validate; every error names its flag.
func (f *flags) serveConfig() (receiver.Config, error) {
	cfg := receiver.Config{
		Listen: f.listen, DatabaseURL: f.databaseURL, AdminTokenFile: f.adminTokenFile,
		MaxBodyBytes: int64(f.maxBodyBytes), MaxDecodedBytes: int64(f.maxDecodedBytes),
		MaxLineBytes: int(f.maxLineBytes), MaxLines: int(f.maxLines),
		MQTTBroker: f.mqttBroker, MQTTClientID: f.mqttClientID, MQTTPrefix: f.mqttPrefix, MQTTGroup: f.mqttGroup,
		MQTTUsername: f.mqttUsername, MQTTPasswordFile: f.mqttPasswordFile,
		TLSCert: f.tlsCert, TLSKey: f.tlsKey, Retention: time.Duration(f.retention),
	}
	if err := cfg.Validate(); err != nil {
		return receiver.Config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

// sizeFlag is a byte count, read by reading.ParseSize as the edge reads
// its sizes: 16384, 512KiB, 1.5GiB, 64KB, with the unit in any case (8mib).
type sizeFlag reading.Size

// maxSizeFlag bounds a size flag: no limit of a batch needs more.
const maxSizeFlag = 1 << 40

func (s sizeFlag) String() string { return reading.Size(s).String() }

func (s *sizeFlag) Set(v string) error {
	n, err := reading.ParseSize(v)
	if err != nil || n < 0 || n > maxSizeFlag {
		return errors.New("want a size such as 16384, 512KiB or 8MiB")
	}
	*s = sizeFlag(n)
	return nil
}

// daysFlag is a duration as Go writes it (720h, 90m) or in whole days
// (90d).
type daysFlag time.Duration

func (d daysFlag) String() string {
	if d != 0 && time.Duration(d)%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(time.Duration(d)/(24*time.Hour)), 10) + "d"
	}
	return time.Duration(d).String()
}

func (d *daysFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days < 0 || days > 100*365 {
			return errors.New("want a duration such as 90d, 720h or 0")
		}
		*d = daysFlag(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	t, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 90d, 720h or 0")
	}
	*d = daysFlag(t)
	return nil
}

// countFlag is a positive count.
type countFlag int

func (c *countFlag) String() string { return strconv.Itoa(int(*c)) }

func (c *countFlag) Set(v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > 10_000_000 {
		return errors.New("want a whole number from 1 to 10000000")
	}
	*c = countFlag(n)
	return nil
}

// parse parses flags given before, between or after the command words and
// returns the words.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return words, nil
		}
		words, args = append(words, args[0]), args[1:]
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, f := newFlagSet(getenv, stderr)
	words, err := parse(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := f.applyEnv(fs, getenv); err != nil {
		return err
	}
	cmd := "serve"
	if len(words) > 0 {
		cmd, words = words[0], words[1:]
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch cmd {
	case "serve":
		if len(words) > 0 {
			return fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, words)
		}
		cfg, err := f.serveConfig()
		if err != nil {
			return err
		}
		cfg.Logger = log
		return receiver.Serve(ctx, cfg)
	case "migrate":
		st, err := receiver.OpenMigrated(ctx, f.databaseURL)
		if err != nil {
			return err
		}
		st.Close()
		fmt.Fprintln(stderr, "database migrated")
		return nil
	case "device":
		return runDevice(ctx, f, words, stdout)
	case "version":
		fmt.Fprintf(stdout, "outpost-receiver %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
		return nil
	case "help":
		fs.SetOutput(stdout)
		fs.Usage()
		return nil
	}
	fs.Usage()
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

func runDevice(ctx context.Context, f *flags, words []string, stdout io.Writer) error {
	if len(words) == 0 {
		return fmt.Errorf("%w: device add ID | device list | device revoke ID | device rotate ID [--grace 24h]", errUsage)
	}
	sub, words := words[0], words[1:]
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(words) != want {
		return fmt.Errorf("%w: device %s takes %d argument(s), got %d", errUsage, sub, want, len(words))
	}
	switch sub {
	case "add", "list", "revoke", "rotate":
	default:
		return fmt.Errorf("%w: unknown device command %q (want add, list, revoke or rotate)", errUsage, sub)
	}
	if f.grace < 0 {
		return fmt.Errorf("%w: --grace %v: must not be negative", errUsage, f.grace)
	}
	st, err := receiver.OpenMigrated(ctx, f.databaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "add":
		token, err := receiver.AddDevice(ctx, st, words[0])
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, token)
		return err
	case "rotate":
		token, err := receiver.RotateDevice(ctx, st, words[0], f.grace)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, token)
		return err
	case "revoke":
		return st.RevokeDevice(ctx, words[0], time.Now().UTC())
	}
	ds, err := st.Devices(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tLAST SEEN\tSTATE")
	for _, d := range ds {
		seen, state := "never", "active"
		if d.LastSeen != nil {
			seen = d.LastSeen.Format(time.RFC3339)
		}
		if d.Revoked != nil {
			state = "revoked " + d.Revoked.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, d.Created.Format(time.RFC3339), seen, state)
	}
	return tw.Flush()
}
