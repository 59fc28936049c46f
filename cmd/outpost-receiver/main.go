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
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"text/tabwriter"
	"time"

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
  migrate             apply the database migrations and exit
  version             print the version

Flags (every command; the environment variable gives the default):
`

type flags struct {
	listen, databaseURL, mqttBroker, adminTokenFile, mqttClientID string
}

func newFlagSet(getenv func(string) string, stderr io.Writer) (*flag.FlagSet, *flags) {
	f := &flags{}
	fs := flag.NewFlagSet("outpost-receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	host, _ := os.Hostname()
	fs.StringVar(&f.listen, "listen", env("OUTPOST_LISTEN", "127.0.0.1:8080"), "HTTP listen address (env OUTPOST_LISTEN)")
	fs.StringVar(&f.databaseURL, "database-url", env("DATABASE_URL", ""),
		"postgres://… or sqlite:PATH (env DATABASE_URL; default SQLite at ./"+receiver.DefaultSQLitePath+")")
	fs.StringVar(&f.mqttBroker, "mqtt-broker", env("OUTPOST_MQTT_BROKER", ""), "MQTT broker URL; MQTT ingest only when set (env OUTPOST_MQTT_BROKER)")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", env("OUTPOST_ADMIN_TOKEN_FILE", ""), "file holding the admin token of the query API (env OUTPOST_ADMIN_TOKEN_FILE)")
	fs.StringVar(&f.mqttClientID, "mqtt-client-id", "outpost-receiver-"+host, "MQTT client id, one per replica")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs, f
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
		return receiver.Serve(ctx, receiver.Config{
			Listen: f.listen, DatabaseURL: f.databaseURL, MQTTBroker: f.mqttBroker,
			MQTTClientID: f.mqttClientID, AdminTokenFile: f.adminTokenFile, Logger: log,
		})
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

func openMigrated(ctx context.Context, url string) (receiver.Store, error) {
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
