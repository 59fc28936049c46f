// Package testserver starts private instances of real PostgreSQL and Mosquitto servers for tests,
// each on a free loopback port with its data in a fresh temporary directory, and tears them
// down when the test ends.
//
// The servers are the ones installed on the machine (apt-get install postgresql mosquitto); the
// machine's own instances on the default ports are never touched. When a server is not
// installed the test is skipped, or fails when OUTPOST_REQUIRE_SERVICES=1 (as in CI).
//
// Every server can be stopped cleanly, killed with SIGKILL, and started again on the same port
// with the same data, so tests can check what survives a crash. The helpers and the methods of
// the returned servers must be called from the test's own goroutine (they call t.Fatal).
// Server processes get SIGKILL if the test binary dies, so nothing outlives a test run.
package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds every start of a server, and stopTimeout every clean stop.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
)

// RequireEnv is the environment variable that turns a missing server into a test failure
// instead of a skip.
const RequireEnv = "OUTPOST_REQUIRE_SERVICES"

// missing skips the test, or fails it when RequireEnv=1, saying how to install what is missing.
func missing(t testing.TB, what, pkg string) {
	t.Helper()
	msg := fmt.Sprintf("testserver: %s not found; install it with: apt-get install %s", what, pkg)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal(msg + " (" + RequireEnv + "=1 makes this a failure)")
	}
	t.Skip(msg + " (set " + RequireEnv + "=1 to fail instead of skip)")
}

// runAs is the account a server runs as: nil for the current user, or, when the tests run as
// root, the server's own system account (PostgreSQL refuses to run as root, and Mosquitto
// would otherwise switch user itself, which clears the parent-death signal).
type runAs struct {
	name     string
	uid, gid int
}

// serverAccount returns the account to run a server as, and false if root's tests need an
// account that does not exist.
func serverAccount(name string) (*runAs, bool) {
	if os.Geteuid() != 0 {
		return nil, true
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	return &runAs{name: name, uid: uid, gid: gid}, true
}

// chown gives path to the account, if any.
func (a *runAs) chown(path string) error {
	if a == nil {
		return nil
	}
	if err := os.Chown(path, a.uid, a.gid); err != nil {
		return fmt.Errorf("give %s to %s: %w", path, a.name, err)
	}
	return nil
}

// command returns a command that runs as the account, from "/" so that it can read its working
// directory, and gets SIGKILL when the test binary dies.
func (a *runAs) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if a != nil {
		// Go sets the parent-death signal after switching user, so it survives the switch.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid)}
	}
	return cmd
}

// privateDir makes a fresh directory for one server and removes it when the test ends. It is
// not under t.TempDir: that directory's parent is 0700 root, which a server running as its own
// account cannot traverse.
func privateDir(t testing.TB, prefix string, owner *runAs) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("testserver: remove %s: %v", dir, err)
		}
	})
	if err := owner.chown(dir); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	return dir
}

// freePort returns a loopback TCP port that nothing listened on a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitBindable waits until port can be listened on again, after a server on it was stopped.
func waitBindable(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d still busy after %v: %w", port, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errAddrInUse marks a start that failed because another process took the port.
var errAddrInUse = errors.New("address already in use")

// process is a running server process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // how it exited; read only after done is closed
}

// startProcess starts cmd, with its output appended to the file at logPath.
func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the process has already been reaped.
func (p *process) signal(sig os.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig) // it may exit in between: nothing to do then
	}
}

// wait waits up to timeout for the process to exit.
func (p *process) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// stop sends sig and waits; if the process does not exit in time it is killed, and the
// returned error says so.
func (p *process) stop(sig os.Signal) error {
	p.signal(sig)
	if p.wait(stopTimeout) {
		return nil
	}
	p.signal(syscall.SIGKILL)
	p.wait(stopTimeout)
	return fmt.Errorf("did not stop within %v of %v; killed it", stopTimeout, sig)
}

// readLogFrom returns what the log at path holds from offset on.
func readLogFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	return string(b[offset:])
}

// logSize returns the current size of the log at path, 0 if it does not exist yet.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// startError marks err with errAddrInUse if the server's log of the failed start says that
// another process took the port.
func startError(err error, log string) error {
	if strings.Contains(log, "Address already in use") {
		err = fmt.Errorf("%w (%w)", err, errAddrInUse)
	}
	return err
}
