package main

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errOut); err != nil {
		t.Fatalf("run(version) = %v", err)
	}
	want := "outpost " + version + " " + runtime.GOOS + "/" + runtime.GOARCH
	if !strings.HasPrefix(out.String(), want) {
		t.Errorf("run(version) printed %q; want prefix %q", out.String(), want)
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, &out, &errOut)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `"frobnicate"`) {
		t.Errorf("run(frobnicate) = %v; want a usage error naming the command", err)
	}
	if !strings.Contains(errOut.String(), "Usage: outpost") {
		t.Errorf("run(frobnicate) stderr = %q; want the usage text", errOut.String())
	}
	if err := run(context.Background(), nil, &out, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("run() = %v; want a usage error", err)
	}
}
