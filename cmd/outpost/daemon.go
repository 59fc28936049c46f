package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/outpost-iot/outpost/daemon"
	"github.com/outpost-iot/outpost/daemon/config"
)

// commandFlags parses the flags every command takes (--config) plus the
// command's own, and refuses stray arguments.
func commandFlags(name string, args []string, stderr io.Writer, own func(*flag.FlagSet)) (string, error) {
	path, _, err := commandArgs(name, args, 0, stderr, own)
	return path, err
}

// commandArgs is commandFlags for a command that takes n arguments too
// (before or after the flags).
func commandArgs(name string, args []string, n int, stderr io.Writer, own func(*flag.FlagSet)) (string, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "configuration `file`")
	if own != nil {
		own(fs)
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != n {
		return "", nil, fmt.Errorf("%w: %s takes %d argument(s), got %d", errUsage, name, n, len(positional))
	}
	return *path, positional, nil
}

// runDaemon is `outpost daemon`.
func runDaemon(ctx context.Context, args []string, stderr io.Writer, reload <-chan struct{}) error {
	path, err := commandFlags("daemon", args, stderr, nil)
	if err != nil {
		return err
	}
	return daemon.Run(ctx, daemon.Options{ConfigPath: path, Version: version, Stderr: stderr, Reload: reload})
}

// runStatus is `outpost status [--json]`.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	path, err := commandFlags("status", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the daemon's status as JSON")
	})
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	st, raw, err := daemon.FetchStatus(ctx, cfg.Status.Socket)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := stdout.Write(raw)
		return err
	}
	return daemon.WriteStatus(stdout, st, time.Now())
}
