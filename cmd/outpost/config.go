package main

import (
	"fmt"
	"io"

	"github.com/outpost-iot/outpost/daemon/config"
)

// runConfig is `outpost config check`: it loads the configuration, prints
// the effective one (defaults filled in, secrets only as file paths) and
// fails, naming every bad key and its line, when the file is not valid.
func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: want 'outpost config check'", errUsage)
	}
	path, err := commandFlags("config check", args[1:], stderr, nil)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if err := cfg.WriteYAML(stdout); err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", path, w)
	}
	fmt.Fprintf(stderr, "%s: configuration is valid\n", path)
	return nil
}
