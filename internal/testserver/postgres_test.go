package testserver

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func connectPG(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, conn *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// A committed row survives SIGKILL of the whole server, and a clean stop, and the server
// comes back on the same port each time.
func TestPostgresKillStopStart(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t)
	if pg.Port() == 5432 || pg.Port() == 0 {
		t.Fatalf("port %d: want a private free port", pg.Port())
	}
	wantURL := "postgres://postgres@127.0.0.1:" + strconv.Itoa(pg.Port()) + "/postgres?sslmode=disable"
	if pg.URL() != wantURL {
		t.Fatalf("URL() = %q, want %q", pg.URL(), wantURL)
	}

	conn := connectPG(t, pg.URL())
	mustExec(t, conn, "CREATE TABLE readings (seq bigint PRIMARY KEY)")
	mustExec(t, conn, "INSERT INTO readings VALUES (1)")

	pg.Kill()
	if err := conn.Ping(context.Background()); err == nil {
		t.Fatal("a connection to the killed server still works")
	}
	pg.Kill() // a no-op when not running
	pg.Start()

	conn = connectPG(t, pg.URL())
	if n := count(t, conn, "SELECT count(*) FROM readings WHERE seq = 1"); n != 1 {
		t.Fatalf("after Kill and Start: %d committed rows, want 1", n)
	}
	mustExec(t, conn, "INSERT INTO readings VALUES (2)")

	pg.Stop()
	pg.Stop() // a no-op when not running
	pg.Start()
	conn = connectPG(t, pg.URL())
	if n := count(t, conn, "SELECT count(*) FROM readings"); n != 2 {
		t.Fatalf("after Stop and Start: %d rows, want 2", n)
	}
	pg.Kill() // the cleanup copes with a killed server
}

// Databases made by CreateDatabase are separate and usable in parallel subtests.
func TestPostgresCreateDatabase(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t, "fsync=off") // speed only: this test crashes nothing
	for _, name := range []string{"alpha", "Beta-2"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := pg.CreateDatabase(t, name)
			if !strings.Contains(url, ":"+strconv.Itoa(pg.Port())+"/") {
				t.Fatalf("URL %q does not name port %d", url, pg.Port())
			}
			conn := connectPG(t, url)
			var db string
			if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil {
				t.Fatal(err)
			}
			if db != name {
				t.Fatalf("connected to database %q, want %q", db, name)
			}
			// The same table name in each database: would collide if they were shared.
			mustExec(t, conn, "CREATE TABLE t (v text)")
			mustExec(t, conn, "INSERT INTO t VALUES ($1)", name)
			if n := count(t, conn, "SELECT count(*) FROM t"); n != 1 {
				t.Fatalf("%d rows in %s, want 1", n, name)
			}
		})
	}
}
