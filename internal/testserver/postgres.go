package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL server. Its methods must be called from the goroutine of
// the test that started it.
type Postgres struct {
	t        testing.TB
	bin      string // directory holding initdb and postgres
	dir      string // holds data/, the Unix socket and pg.log
	account  *runAs
	settings []string
	port     int
	proc     *process // nil while stopped
}

// StartPostgres initialises a fresh cluster (superuser postgres, trust authentication, UTF8)
// in a temporary directory and starts a postmaster on a free loopback port. The server is
// stopped and its data removed when the test ends; if the test failed, its log is shown.
//
// settings are extra server settings as name=value, passed as -c options. fsync stays on
// unless a setting says otherwise: crash tests need it, pure speed tests may turn it off.
func StartPostgres(t testing.TB, settings ...string) *Postgres {
	t.Helper()
	bin, ok := findPostgres()
	if !ok {
		missing(t, "PostgreSQL server (initdb, postgres)", "postgresql")
	}
	account, ok := serverAccount("postgres")
	if !ok {
		missing(t, "user postgres (needed to run PostgreSQL when tests run as root)", "postgresql")
	}
	pg := &Postgres{t: t, bin: bin, account: account, settings: settings}
	pg.dir = privateDir(t, "outpost-pg-*", account)
	t.Cleanup(pg.cleanup)
	if err := pg.initdb(); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	// Another process may take the free port before the postmaster binds it: try another.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		pg.port = port
		err = pg.start()
		if err == nil {
			return pg
		}
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			t.Fatalf("testserver: %v", err)
		}
	}
}

// URL returns the connection URL of the postgres database as the superuser postgres.
func (pg *Postgres) URL() string { return pg.databaseURL("postgres") }

// Port returns the TCP port the server listens on, on 127.0.0.1.
func (pg *Postgres) Port() int { return pg.port }

// Stop shuts the server down cleanly (fast shutdown: sessions are ended, a checkpoint is
// written). It does nothing if the server is not running.
func (pg *Postgres) Stop() {
	pg.t.Helper()
	if err := pg.stop(); err != nil {
		pg.t.Fatalf("testserver: %v", err)
	}
}

// Kill kills the postmaster and all its children with SIGKILL at the same instant, as a
// crash would, and waits until they are gone. Recovery from the WAL happens at the next
// Start. It does nothing if the server is not running.
func (pg *Postgres) Kill() {
	pg.t.Helper()
	if pg.proc == nil {
		return
	}
	err := killTree(pg.proc)
	pg.proc = nil
	if err != nil {
		pg.t.Fatalf("testserver: kill postgres: %v", err)
	}
}

// Start starts the stopped or killed server again on the same port with the same data, and
// waits until it accepts connections (after crash recovery, if it was killed).
func (pg *Postgres) Start() {
	pg.t.Helper()
	if pg.proc != nil {
		pg.t.Fatal("testserver: postgres is already running")
	}
	if err := pg.start(); err != nil {
		pg.t.Fatalf("testserver: %v", err)
	}
}

// CreateDatabase creates a new, empty database and returns its connection URL, so that
// parallel tests can share one server without seeing each other's tables.
func (pg *Postgres) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatalf("testserver: create database %q: %v", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testserver: create database %q: %v", name, err)
	}
	return pg.databaseURL(name)
}

func (pg *Postgres) databaseURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, url.PathEscape(db))
}

func (pg *Postgres) dataDir() string { return filepath.Join(pg.dir, "data") }
func (pg *Postgres) logPath() string { return filepath.Join(pg.dir, "pg.log") }

func (pg *Postgres) initdb() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := pg.account.command(ctx, filepath.Join(pg.bin, "initdb"),
		"-D", pg.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb in %s: %w\n%s", pg.dir, err, out)
	}
	return nil
}

// start runs the postmaster and waits until it is ready. On failure no process is left, and
// the error wraps errAddrInUse if another process took the port.
func (pg *Postgres) start() error {
	if err := waitBindable(pg.port, 10*time.Second); err != nil {
		return err
	}
	args := []string{"-D", pg.dataDir(), "-p", strconv.Itoa(pg.port), "-k", pg.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"}
	for _, s := range pg.settings {
		args = append(args, "-c", s)
	}
	offset := logSize(pg.logPath())
	p, err := startProcess(pg.account.command(context.Background(), filepath.Join(pg.bin, "postgres"), args...), pg.logPath())
	if err != nil {
		return err
	}
	if err := pg.waitReady(p); err != nil {
		_ = killTree(p)
		return startError(fmt.Errorf("postgres on port %d: %w (its log is shown below)", pg.port, err),
			readLogFrom(pg.logPath(), offset))
	}
	pg.proc = p
	return nil
}

// waitReady waits until the postmaster says "ready" in postmaster.pid (what pg_ctl -w checks)
// and its port accepts connections.
func (pg *Postgres) waitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	pidFile := filepath.Join(pg.dataDir(), "postmaster.pid")
	for {
		if p.exited() {
			return fmt.Errorf("postgres exited during start: %v", p.err)
		}
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) > 7 && lines[0] == strconv.Itoa(p.pid()) && strings.TrimSpace(lines[7]) == "ready" {
				c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.port)), time.Second)
				if err == nil {
					return c.Close()
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (pg *Postgres) stop() error {
	if pg.proc == nil {
		return nil
	}
	p := pg.proc
	pg.proc = nil
	p.signal(syscall.SIGINT) // fast shutdown
	if p.wait(stopTimeout) {
		return nil
	}
	if err := killTree(p); err != nil {
		return fmt.Errorf("postgres did not stop within %v, and killing it failed: %w", stopTimeout, err)
	}
	return fmt.Errorf("postgres did not stop within %v; killed it", stopTimeout)
}

func (pg *Postgres) cleanup() {
	if err := pg.stop(); err != nil {
		pg.t.Errorf("testserver: %v", err)
	}
	if pg.t.Failed() {
		pg.t.Logf("testserver: %s:\n%s", pg.logPath(), readLogFrom(pg.logPath(), 0))
	}
}

// killTree kills the postmaster p and its children (backends, checkpointer, WAL writer...),
// which make themselves session leaders and so cannot be killed as a process group. The
// postmaster is stopped first so that it forks no new child and reaps none (a child's pid
// cannot be reused before it is reaped). Returns once all of them are gone, so that no
// orphan still holds the shared memory that would make the next start refuse to run.
func killTree(p *process) error {
	p.signal(syscall.SIGSTOP)
	children := childrenOf(p.pid())
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL) // it may have exited already
	}
	p.signal(syscall.SIGKILL)
	if !p.wait(stopTimeout) {
		return fmt.Errorf("postmaster %d still running %v after SIGKILL", p.pid(), stopTimeout)
	}
	deadline := time.Now().Add(stopTimeout)
	for _, c := range children {
		for alive(c) {
			if time.Now().After(deadline) {
				return fmt.Errorf("child %d of postmaster still running %v after SIGKILL", c, stopTimeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var children []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(n); ok && ppid == pid {
			children = append(children, n)
		}
	}
	return children
}

// alive reports whether pid is a process that has not exited (a zombie has released its
// memory, shared memory included).
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

// procStat returns the state and parent pid of pid from /proc/PID/stat.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// "pid (comm) state ppid ...", and comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// findPostgres returns the directory holding the server's initdb and postgres: the one
// pg_config names, else the newest /usr/lib/postgresql/*/bin, else the one on PATH.
func findPostgres() (string, bool) {
	var dirs []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versioned, func(a, b string) int { // newest first
		va, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(a)), 64)
		vb, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(b)), 64)
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	dirs = append(dirs, versioned...)
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, true
		}
	}
	return "", false
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
