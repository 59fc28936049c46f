//go:build !arm

package powercut

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Environment variables that decide whether a test that needs the mount
// runs.
const (
	// RequireEnv=1 (as in CI) turns a machine that cannot mount (no root,
	// no /dev/fuse) into a test failure instead of a skip.
	RequireEnv = "OUTPOST_REQUIRE_SERVICES"
	// EmulatedEnv=1 says the tests run under qemu-user emulation (make
	// test-arm sets it), where FUSE does not work: the FUSE server and
	// its users would run translated system calls against the host's
	// kernel, and mount(2) of /dev/fuse from an emulated process is not
	// supported. The tests skip there even when RequireEnv=1.
	EmulatedEnv = "OUTPOST_EMULATED"
)

// Unavailable says why a power-cut mount cannot work here, or returns nil;
// emulated is set when the reason is qemu-user emulation.
func Unavailable() (emulated bool, err error) {
	if os.Getenv(EmulatedEnv) == "1" {
		return true, errors.New("powercut: running under qemu-user emulation (" + EmulatedEnv + "=1), where FUSE cannot work")
	}
	if os.Geteuid() != 0 {
		return false, errors.New("powercut: mounting a FUSE file system needs root")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("powercut: FUSE is not available: %w", err)
	}
	f.Close()
	return false, nil
}

// Require skips the test when a power-cut mount cannot work here; with
// RequireEnv=1 it fails it instead, unless the reason is emulation.
func Require(t testing.TB) {
	t.Helper()
	emulated, err := Unavailable()
	switch {
	case err == nil:
		return
	case emulated:
		t.Skip(err.Error() + "; skipped")
	case os.Getenv(RequireEnv) == "1":
		t.Fatal(err.Error() + " (" + RequireEnv + "=1 makes this a failure)")
	default:
		t.Skip(err.Error() + " (set " + RequireEnv + "=1 to fail instead of skip)")
	}
}

// MountT mounts a power-cut file system over a fresh backing directory for
// the test, after Require, and unmounts it when the test ends. Both
// directories are under one temporary directory, so the keep directory
// lands there too.
func MountT(t testing.TB) *FS {
	t.Helper()
	Require(t)
	base := t.TempDir()
	backing := filepath.Join(base, "backing")
	mnt := filepath.Join(base, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("powercut: %v", err)
		}
	})
	return f
}
