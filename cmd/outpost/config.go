package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/outpost-iot/outpost/daemon"
)

// runConfig is `outpost config check`: it loads the configuration, prints
// the effective one (defaults filled in, secrets only as file paths) and
// fails, naming every bad key and its line, when the file is not valid.
func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: want 'outpost config check'", errUsage)
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", daemon.DefaultConfigPath, "configuration `file`")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	cfg, err := daemon.LoadConfig(*path)
	if err != nil {
		return err
	}
	if err := cfg.WriteYAML(stdout); err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", *path, w)
	}
	fmt.Fprintf(stderr, "%s: configuration is valid\n", *path)
	return nil
}
