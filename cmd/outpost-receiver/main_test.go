package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/logbuf"
	"github.com/outpost-iot/outpost/receiver"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

func runT(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestDeviceCommands(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
	out, _, err := runT(t, nil, "device", "add", "pi-07", "--database-url", db)
	if err != nil {
		t.Fatalf("device add: %v", err)
	}
	if !regexp.MustCompile(`^otk_[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Errorf("device add printed %q; want the token alone on one line", out)
	}
	// DATABASE_URL from the environment; flags before the command words.
	env := map[string]string{"DATABASE_URL": db}
	if _, _, err := runT(t, env, "device", "add", "pi-07"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("device add of an existing id = %v; want already exists", err)
	}
	if _, _, err := runT(t, env, "device", "add", "bad id"); err == nil || !strings.Contains(err.Error(), `device id "bad id"`) {
		t.Errorf("device add of a bad id = %v; want an error naming it", err)
	}
	if _, _, err := runT(t, env, "device", "revoke", "pi-07"); err != nil {
		t.Errorf("device revoke: %v", err)
	}
	if _, _, err := runT(t, env, "device", "revoke", "pi-99"); err == nil {
		t.Error("device revoke of an unknown id succeeded")
	}
	out, _, err = runT(t, env, "--database-url", db, "device", "list")
	if err != nil || !strings.Contains(out, "pi-07") || !strings.Contains(out, "revoked") {
		t.Errorf("device list = %q, %v; want pi-07 revoked", out, err)
	}
	if _, errOut, err := runT(t, env, "migrate"); err != nil || !strings.Contains(errOut, "migrated") {
		t.Errorf("migrate = %v (%s)", err, errOut)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"device"}, {"device", "add"}, {"device", "frob", "x"}, {"--no-such-flag"}, {"serve", "extra"}} {
		if _, _, err := runT(t, nil, args...); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v; want a usage error", args, err)
		}
	}
	if out, _, err := runT(t, nil, "version"); err != nil || !strings.HasPrefix(out, "outpost-receiver ") {
		t.Errorf("version = %q, %v", out, err)
	}
}

func TestServeShutsDown(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr logbuf.Buffer
	env := map[string]string{"OUTPOST_LISTEN": "127.0.0.1:0", "DATABASE_URL": db}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr) }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "receiver listening"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve not listening after 30s:\n%s", stderr.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return within 30s of its context ending")
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("serve log = %s; want listening and shutting down", stderr.String())
	}
}

// TestDeviceRotate: rotate prints a new token; the old one works until
// the grace ends (--grace 0: not at all); a revoked device gets a new
// token that works, and its old ones never again.
func TestDeviceRotate(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
	env := map[string]string{"DATABASE_URL": db}
	tok1, _, err := runT(t, env, "device", "add", "pi-07")
	if err != nil {
		t.Fatal(err)
	}
	tok2, _, err := runT(t, env, "device", "rotate", "pi-07") // default grace 24h
	if err != nil || !regexp.MustCompile(`^otk_[A-Za-z0-9_-]{43}\n$`).MatchString(tok2) || tok2 == tok1 {
		t.Fatalf("device rotate = %q, %v; want a new token alone on one line", tok2, err)
	}
	st, err := receiver.OpenMigrated(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	auth := func(tok string) error {
		_, err := st.Authenticate(t.Context(), store.HashToken(strings.TrimSpace(tok)))
		return err
	}
	if err := auth(tok1); err != nil {
		t.Errorf("old token within the 24h grace: %v; want accepted", err)
	}
	if err := auth(tok2); err != nil {
		t.Errorf("new token: %v; want accepted", err)
	}
	tok3, _, err := runT(t, env, "device", "rotate", "pi-07", "--grace", "0")
	if err != nil {
		t.Fatal(err)
	}
	if err := auth(tok2); !errors.Is(err, store.ErrUnknownToken) {
		t.Errorf("token replaced with --grace 0: %v; want unknown", err)
	}
	if _, _, err := runT(t, env, "device", "revoke", "pi-07"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runT(t, env, "device", "add", "pi-07"); err == nil || !strings.Contains(err.Error(), "device rotate pi-07") {
		t.Errorf("device add of a revoked id = %v; want an error pointing to device rotate", err)
	}
	tok4, _, err := runT(t, env, "device", "rotate", "--grace=1h", "pi-07")
	if err != nil {
		t.Fatalf("device rotate of a revoked device: %v", err)
	}
	if err := auth(tok4); err != nil {
		t.Errorf("new token of a reinstated device: %v; want accepted", err)
	}
	for _, tok := range []string{tok1, tok3} {
		if err := auth(tok); err == nil {
			t.Errorf("a token from before the revoke works again")
		}
	}
	if _, _, err := runT(t, env, "device", "rotate", "pi-99"); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("device rotate of an unknown id = %v; want ErrUnknownDevice", err)
	}
	if _, _, err := runT(t, env, "device", "rotate", "pi-07", "--grace", "-1h"); !errors.Is(err, errUsage) {
		t.Errorf("device rotate --grace -1h = %v; want a usage error", err)
	}
}

// TestServeRetention: serve with --retention deletes the readings
// received longer ago, and keeps the others.
func TestServeRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	db := "sqlite:" + path
	st, err := receiver.OpenMigrated(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(t.Context(), "pi-07", store.HashToken("tok"), time.Now()); err != nil {
		t.Fatal(err)
	}
	old := storetest.BatchOf(storetest.Readings("pi-07", storetest.Stream, 1, 2500))
	old.ReceivedAt = time.Now().Add(-31 * 24 * time.Hour)
	if _, err := st.Ingest(t.Context(), "pi-07", old); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Ingest(t.Context(), "pi-07", storetest.BatchOf(storetest.Readings("pi-07", storetest.Stream, 2501, 2510))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr logbuf.Buffer
	env := map[string]string{"OUTPOST_LISTEN": "127.0.0.1:0", "DATABASE_URL": db, "OUTPOST_RETENTION": "30d"}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr) }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "deleted=2500"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("retention did not delete the 2500 old readings within 30s:\n%s", stderr.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	if got := storetest.All(t, st, store.Query{Device: "pi-07"}); len(got) != 10 || got[0].Seq != 2501 {
		t.Errorf("left %d readings; want seqs 2501..2510", len(got))
	}
	st.Close()
	if !strings.Contains(stderr.String(), "retention=720h0m0s") {
		t.Errorf("serve log does not show the retention:\n%s", stderr.String())
	}
}
