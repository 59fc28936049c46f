// The outpost-receiver program is Outpost's cloud side: it serves the
// ingest and query API (the default command, serve), manages device tokens
// (device add|list|revoke) and migrates the database (migrate).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver"
	"github.com/outpost-iot/outpost/receiver/store"
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

// minLineBytes is the smallest line limit allowed: a reading with short
// names takes about 150 bytes.
const minLineBytes = 256

// serveConfig checks the flags of serve and reads the MQTT password file.
// Every error names its flag.
func (f *flags) serveConfig() (receiver.Config, error) {
	cfg := receiver.Config{
		Listen: f.listen, DatabaseURL: f.databaseURL, AdminTokenFile: f.adminTokenFile,
		MaxBodyBytes: int64(f.maxBodyBytes), MaxDecodedBytes: int64(f.maxDecodedBytes),
		MaxLineBytes: int(f.maxLineBytes), MaxLines: int(f.maxLines),
		MQTTBroker: f.mqttBroker, MQTTClientID: f.mqttClientID, MQTTPrefix: f.mqttPrefix, MQTTGroup: f.mqttGroup,
		MQTTUsername: f.mqttUsername,
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if f.maxBodyBytes < 1<<10 {
		bad("--max-body-bytes: %s is below the minimum of 1KiB", f.maxBodyBytes)
	}
	if f.maxDecodedBytes < f.maxBodyBytes {
		bad("--max-decoded-bytes: %s is below --max-body-bytes (%s): a plain body could never reach its limit", f.maxDecodedBytes, f.maxBodyBytes)
	}
	if f.maxLineBytes < minLineBytes {
		bad("--max-line-bytes: %s is below the minimum of %d bytes", f.maxLineBytes, minLineBytes)
	}
	if int64(f.maxLineBytes) > int64(f.maxDecodedBytes) {
		bad("--max-line-bytes: %s is above --max-decoded-bytes (%s)", f.maxLineBytes, f.maxDecodedBytes)
	}
	if f.maxLines < 1 {
		bad("--max-lines: %d; want at least 1", int(f.maxLines))
	}
	if f.mqttBroker != "" {
		u, err := url.Parse(f.mqttBroker)
		switch {
		case err != nil:
			bad("--mqtt-broker: %v", err)
		case u.Scheme == "" || u.Host == "":
			bad("--mqtt-broker: %q is not a URL such as tcp://host:1883", u.Redacted())
		default:
			if _, ok := u.User.Password(); ok {
				bad("--mqtt-broker: the URL carries a password; put it in a file named by --mqtt-password-file instead")
			}
		}
	}
	if err := checkTopic(f.mqttPrefix, true); err != nil {
		bad("--mqtt-prefix: %q %v", f.mqttPrefix, err)
	}
	if err := checkTopic(f.mqttGroup, false); err != nil {
		bad("--mqtt-group: %q %v", f.mqttGroup, err)
	}
	if f.mqttClientID == "" || len(f.mqttClientID) > 256 || !utf8.ValidString(f.mqttClientID) {
		bad("--mqtt-client-id: %q; want 1 to 256 bytes of UTF-8", f.mqttClientID)
	}
	if f.mqttPasswordFile != "" {
		if f.mqttUsername == "" {
			bad("--mqtt-password-file needs --mqtt-username")
		}
		pw, err := receiver.ReadSecretFile(f.mqttPasswordFile)
		if err != nil {
			bad("--mqtt-password-file: %v", err)
		}
		cfg.MQTTPassword = pw
	}
	if err := errors.Join(errs...); err != nil {
		return receiver.Config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

// checkTopic checks a topic prefix (levels allowed) or a shared-subscription
// group name (one level).
func checkTopic(s string, levels bool) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case strings.ContainsAny(s, "+#\x00"):
		return errors.New("holds an MQTT wildcard (+ or #) or NUL")
	case !levels && strings.Contains(s, "/"):
		return errors.New("holds a /; want one topic level")
	case strings.HasPrefix(s, "$"):
		return errors.New("starts with $, which brokers reserve")
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//"):
		return errors.New("has an empty topic level")
	case !utf8.ValidString(s):
		return errors.New("is not UTF-8")
	}
	return nil
}

// sizeFlag is a byte count: plain bytes or with a KiB, MiB or GiB suffix.
type sizeFlag int64

func (s sizeFlag) String() string {
	v := int64(s)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

func (s *sizeFlag) Set(v string) error {
	num, mult := strings.TrimSpace(v), int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"b", 1}} {
		if len(num) > len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return errors.New("want a size such as 16384, 512KiB or 8MiB")
	}
	*s = sizeFlag(n * mult)
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
		st, err := openMigrated(ctx, f.databaseURL)
		if err != nil {
			return err
		}
		st.Close()
		fmt.Fprintln(stderr, "database migrated")
		return nil
	case "device":
		return runDevice(ctx, f.databaseURL, words, stdout)
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

func openMigrated(ctx context.Context, url string) (store.Store, error) {
	st, err := receiver.OpenStore(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}

func runDevice(ctx context.Context, url string, words []string, stdout io.Writer) error {
	if len(words) == 0 {
		return fmt.Errorf("%w: device add ID | device list | device revoke ID", errUsage)
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
	case "add", "list", "revoke":
	default:
		return fmt.Errorf("%w: unknown device command %q (want add, list or revoke)", errUsage, sub)
	}
	st, err := openMigrated(ctx, url)
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
