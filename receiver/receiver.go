// Package receiver is Outpost's cloud side: it accepts batches of readings
// from devices over HTTP and from an MQTT broker, stores each (device,
// stream, seq) once, accounts per stream for what arrived, what is missing
// and what the device reported dropped, and answers queries about it.
//
// The stores live beside it: receiver/store is their contract (and
// storetest the conformance suite they pass), receiver/postgres the store
// for fleets, receiver/sqlite the embedded default. Here are the ingest
// and query API (Server, and MQTT from StartMQTT), device tokens, the
// serve command's Config, OpenStore, which picks the store a database URL
// names, and Serve, which wires them for the outpost-receiver command.
package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/postgres"
	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
)

// DefaultSQLitePath is the database used when no database URL is given.
const DefaultSQLitePath = "outpost-receiver.db"

// OpenStore opens the store named by url: "" for SQLite at
// DefaultSQLitePath, "sqlite:PATH" for SQLite at PATH, postgres:// or
// postgresql:// for Postgres. It does not migrate.
func OpenStore(ctx context.Context, url string) (store.Store, error) {
	switch {
	case url == "":
		return sqlite.Open(ctx, DefaultSQLitePath)
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" {
			return nil, errors.New("database url sqlite: names no file (want sqlite:PATH)")
		}
		return sqlite.Open(ctx, path)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return postgres.Open(ctx, url)
	}
	return nil, fmt.Errorf("database url %q: want postgres://…, postgresql://… or sqlite:PATH", redact(url))
}

// OpenMigrated opens the store named by url, as OpenStore does, and
// applies its migrations.
func OpenMigrated(ctx context.Context, url string) (store.Store, error) {
	st, err := OpenStore(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}

// redact hides a password in a URL for error messages.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, ok := strings.Cut(rest[:at], ":"); ok {
			return scheme + "://" + user + ":xxxxx" + rest[at:]
		}
	}
	return url
}

// AddDevice registers a device and returns its new token, which exists
// nowhere else: only its hash is stored.
func AddDevice(ctx context.Context, st store.Store, id string) (string, error) {
	if err := reading.ValidateDevice(id); err != nil {
		return "", fmt.Errorf("device id %q: %w", id, err)
	}
	token, hash := NewToken()
	err := st.AddDevice(ctx, id, hash, time.Now().UTC())
	if errors.Is(err, store.ErrDeviceExists) {
		return "", fmt.Errorf("%w (to give it a new token, revoked or not: outpost-receiver device rotate %s)", err, id)
	}
	if err != nil {
		return "", err
	}
	return token, nil
}

// RotateDevice gives a device a new token and returns it (only its hash
// is stored). The old token keeps working for grace (0: it stops at
// once); a revoked device is reinstated with the new token alone.
func RotateDevice(ctx context.Context, st store.Store, id string, grace time.Duration) (string, error) {
	if grace < 0 {
		return "", fmt.Errorf("grace %v: must not be negative", grace)
	}
	token, hash := NewToken()
	if err := st.RotateToken(ctx, id, hash, grace, time.Now().UTC()); err != nil {
		return "", err
	}
	return token, nil
}

// ReadAdminToken reads the admin token from path (surrounding whitespace
// ignored) and returns its hash, for Options.AdminTokenHash. As for the
// MQTT password, a file that others may read or write is refused.
func ReadAdminToken(path string) ([]byte, error) {
	tok, err := ReadSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin token: %w", err)
	}
	if len(tok) < 16 {
		return nil, fmt.Errorf("admin token in %s: shorter than 16 characters", path)
	}
	return store.HashToken(tok), nil
}

// shutdownTimeout bounds the graceful part of a shutdown.
const shutdownTimeout = 20 * time.Second

// Serve opens and migrates the store, then serves HTTP on cfg.Listen until
// ctx is done, then shuts down gracefully: requests in flight finish (so
// their batches commit or roll back whole) within shutdownTimeout.
func Serve(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opt := Options{Logger: log.With("component", "http"),
		MaxBodyBytes: cfg.MaxBodyBytes, MaxDecodedBytes: cfg.MaxDecodedBytes,
		MaxLineBytes: cfg.MaxLineBytes, MaxLines: cfg.MaxLines}
	if cfg.AdminTokenFile != "" {
		h, err := ReadAdminToken(cfg.AdminTokenFile)
		if err != nil {
			return err
		}
		opt.AdminTokenHash = h
	} else {
		log.Info("no admin token file: the query API is disabled")
	}
	st, err := OpenMigrated(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	var certs *certFiles
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if certs, err = newCertFiles(cfg.TLSCert, cfg.TLSKey, log.With("component", "tls")); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if certs != nil {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: certs.getCertificate, MinVersion: tls.VersionTLS12})
	}
	srv := NewServer(st, opt)
	opt = srv.opt // with the defaults
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      10 * time.Minute, // a day's CSV export
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.MQTTBroker != "" {
		m, err := srv.StartMQTT(ctx, MQTTOptions{Broker: cfg.MQTTBroker, ClientID: cfg.MQTTClientID,
			Prefix: cfg.MQTTPrefix, Group: cfg.MQTTGroup, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword,
			MaxBodyBytes: opt.MaxBodyBytes, MaxDecodedBytes: opt.MaxDecodedBytes, MaxLineBytes: opt.MaxLineBytes, MaxLines: opt.MaxLines,
			Logger: log.With("component", "mqtt")})
		if err != nil {
			ln.Close()
			return err
		}
		defer m.Close() // after the HTTP shutdown below
	}
	if cfg.Retention > 0 {
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			runRetention(rctx, st, cfg.Retention, log.With("component", "retention"))
		}()
		defer func() { stop(); <-done }() // before the store closes

	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("receiver listening", "addr", ln.Addr().String(), "scheme", scheme, "store", storeKind(cfg.DatabaseURL),
		"max_body_bytes", opt.MaxBodyBytes, "max_decoded_bytes", opt.MaxDecodedBytes,
		"max_line_bytes", opt.MaxLineBytes, "max_lines", opt.MaxLines, "retention", retentionText(cfg.Retention))
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "cause", context.Cause(ctx))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}

func retentionText(d time.Duration) string {
	if d == 0 {
		return "forever"
	}
	return d.String()
}

func storeKind(url string) string {
	if strings.HasPrefix(url, "postgres") {
		return "postgres"
	}
	return "sqlite"
}
