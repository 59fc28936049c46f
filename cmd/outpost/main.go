// The outpost program is Outpost's edge daemon and its command line:
// `outpost daemon` (what the systemd unit runs), and the operator's tools
// beside it (status, config check, spool, import, sensors scan, version).
// It parses the arguments and calls into daemon and daemon/config.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/outpost-iot/outpost/daemon/config"
	"github.com/outpost-iot/outpost/drivers/scan"
)

// version is stamped at build time: -ldflags "-X main.version=…" (see the
// Makefile and packaging/version.sh).
var version = "0.0.0~dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP (systemctl reload) re-reads the configuration.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, reload); err != nil {
		fmt.Fprintln(os.Stderr, "outpost:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `Usage: outpost <command> [arguments]

Commands:
  daemon [--config FILE]         run the edge daemon (what the outpost.service unit starts)
  status [--json] [--config FILE]
                                 show the running daemon's sensors, spool and uplink
  spool stats [--json]           the spool: unsent readings, oldest age, drops, dead letters
  spool peek [-n N]              the oldest N unsent readings, as NDJSON
  spool export                   every unsent reading and unreported dropped range, as NDJSON
                                 (valid input for the receiver's POST /v1/readings)
  spool dead [--json]            readings the receiver rejected, kept aside
  spool resend STREAM FROM       send a dead-lettered range again
  spool purge STREAM FROM        delete a dead-lettered range (reported upstream as dropped)
  spool salvage FILE             copy what can be read of a quarantined spool file into the spool
  import FILE|-                  NDJSON readings (sensor, value, timestamp) into the spool
  config check [--config FILE]   check the configuration and print it with defaults filled in
  sensors scan [--config FILE]   list the I²C buses, the addresses that answer and the 1-Wire probes
  version                        print the version and the platform it was built for
  help                           print this help

Every command takes --config FILE (default ` + config.DefaultPath + `).
The spool commands and import go through the running daemon's status socket,
or open the spool file when no daemon runs.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, reload <-chan struct{}) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintf(stdout, "outpost %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
		return nil
	case "daemon":
		return runDaemon(ctx, args[1:], stderr, reload)
	case "status":
		return runStatus(ctx, args[1:], stdout, stderr)
	case "config":
		return runConfig(args[1:], stdout, stderr)
	case "spool":
		return runSpool(ctx, args[1:], stdout, stderr)
	case "import":
		return runImport(ctx, args[1:], stdout, stderr)
	case "sensors":
		if len(args) < 2 || args[1] != "scan" {
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("%w: want: outpost sensors scan", errUsage)
		}
		// Every command takes --config; the scan looks at the hardware,
		// not at the configuration, so it only checks the flag's syntax.
		if _, err := commandFlags("sensors scan", args[2:], stderr, nil); err != nil {
			return err
		}
		return scan.Run(stdout, scan.Options{})
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
}
