package testserver

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MosquittoOptions configures a private Mosquitto broker. The zero value is a broker that
// lets anonymous clients use every topic.
type MosquittoOptions struct {
	// Users maps user names to passwords. When set, clients must log in as one of them.
	Users map[string]string
	// ACL is the text of a Mosquitto ACL file; empty allows every topic to every client.
	// For example, with %u standing for the user name:
	//
	//	user receiver
	//	topic readwrite outpost/#
	//	pattern write outpost/%u/readings
	//	pattern read outpost/%u/receipts
	ACL string
	// AutosaveInterval is how often the broker writes its snapshot (rounded up to whole
	// seconds); 0 keeps Mosquitto's default of 30 minutes. The snapshot is also written by
	// Stop, never by Kill: a killed broker loses what it accepted since the last one.
	AutosaveInterval time.Duration
	// MaxPacketSize is the largest MQTT packet the broker accepts, in bytes; 0 means no limit.
	MaxPacketSize int
	// Config holds extra lines for mosquitto.conf, such as "max_queued_messages 10000".
	Config string
}

// Mosquitto is a private Mosquitto broker with persistence. Its methods must be called from
// the goroutine of the test that started it.
type Mosquitto struct {
	t       testing.TB
	bin     string
	dir     string // holds mosquitto.conf, passwd, acl, mosquitto.log and the snapshot
	account *runAs
	opts    MosquittoOptions
	port    int
	proc    *process // nil while stopped
}

// StartMosquitto writes a configuration for opts in a temporary directory and starts a
// broker on a free loopback port, in the foreground as a child process. The broker is
// stopped and its files removed when the test ends; if the test failed, its log is shown.
func StartMosquitto(t testing.TB, opts MosquittoOptions) *Mosquitto {
	t.Helper()
	bin, ok := findMosquitto()
	if !ok {
		missing(t, "mosquitto", "mosquitto")
	}
	// As root, run it as its own user directly rather than let it switch user itself, which
	// would clear the parent-death signal.
	account, ok := serverAccount("mosquitto")
	if !ok {
		missing(t, "user mosquitto (needed to run Mosquitto when tests run as root)", "mosquitto")
	}
	m := &Mosquitto{t: t, bin: bin, account: account, opts: opts}
	m.dir = privateDir(t, "outpost-mosquitto-*", account)
	t.Cleanup(m.cleanup)
	if len(opts.Users) > 0 {
		pw, err := passwordFile(opts.Users)
		if err == nil {
			err = m.writeFile("passwd", pw)
		}
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
	}
	if opts.ACL != "" {
		if err := m.writeFile("acl", opts.ACL+"\n"); err != nil {
			t.Fatalf("testserver: %v", err)
		}
	}
	// Another process may take the free port before the broker binds it: try another.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		m.port = port
		if err := m.writeFile("mosquitto.conf", m.config()); err != nil {
			t.Fatalf("testserver: %v", err)
		}
		err = m.start()
		if err == nil {
			return m
		}
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			t.Fatalf("testserver: %v", err)
		}
	}
}

// URL returns the broker's URL for paho.mqtt.golang: tcp://127.0.0.1:PORT.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Addr returns the broker's address, 127.0.0.1:PORT.
func (m *Mosquitto) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// Port returns the TCP port the broker listens on.
func (m *Mosquitto) Port() int { return m.port }

// Stop shuts the broker down cleanly with SIGTERM; it writes its snapshot (retained
// messages, persistent sessions, queued messages) before it exits. It does nothing if the
// broker is not running.
func (m *Mosquitto) Stop() {
	m.t.Helper()
	if err := m.stop(syscall.SIGTERM); err != nil {
		m.t.Fatalf("testserver: %v", err)
	}
}

// Kill kills the broker with SIGKILL and waits until it is gone. It does nothing if the
// broker is not running.
func (m *Mosquitto) Kill() {
	m.t.Helper()
	if err := m.stop(syscall.SIGKILL); err != nil {
		m.t.Fatalf("testserver: %v", err)
	}
}

// Start starts the stopped or killed broker again on the same port with the same
// persistence directory, and waits until it answers an MQTT CONNECT.
func (m *Mosquitto) Start() {
	m.t.Helper()
	if m.proc != nil {
		m.t.Fatal("testserver: mosquitto is already running")
	}
	if err := m.start(); err != nil {
		m.t.Fatalf("testserver: %v", err)
	}
}

func (m *Mosquitto) logPath() string { return filepath.Join(m.dir, "mosquitto.log") }

func (m *Mosquitto) config() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# written by outpost's internal/testserver")
	line("listener %d 127.0.0.1", m.port)
	line("persistence true")
	line("persistence_location %s/", m.dir)
	line("log_dest stderr") // the process's output goes to mosquitto.log
	line("log_type error")
	line("log_type warning")
	line("log_type notice")
	line("log_type information")
	line("log_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S")
	if len(m.opts.Users) > 0 {
		line("allow_anonymous false")
		line("password_file %s", filepath.Join(m.dir, "passwd"))
	} else {
		line("allow_anonymous true")
	}
	if m.opts.ACL != "" {
		line("acl_file %s", filepath.Join(m.dir, "acl"))
	}
	if d := m.opts.AutosaveInterval; d > 0 {
		line("autosave_interval %d", int64((d+time.Second-1)/time.Second))
	}
	if m.opts.MaxPacketSize > 0 {
		line("max_packet_size %d", m.opts.MaxPacketSize)
	}
	if m.opts.Config != "" {
		line("%s", m.opts.Config)
	}
	return b.String()
}

// writeFile writes a file into the broker's directory, readable only by the broker (the
// password and ACL files hold secrets).
func (m *Mosquitto) writeFile(name, content string) error {
	path := filepath.Join(m.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write mosquitto %s: %w", name, err)
	}
	return m.account.chown(path)
}

func (m *Mosquitto) start() error {
	if err := waitBindable(m.port, 10*time.Second); err != nil {
		return err
	}
	offset := logSize(m.logPath())
	cmd := m.account.command(context.Background(), m.bin, "-c", filepath.Join(m.dir, "mosquitto.conf"))
	p, err := startProcess(cmd, m.logPath())
	if err != nil {
		return err
	}
	if err := m.waitReady(p); err != nil {
		p.signal(syscall.SIGKILL)
		p.wait(stopTimeout)
		return startError(fmt.Errorf("mosquitto on port %d: %w (its log is shown below)", m.port, err),
			readLogFrom(m.logPath(), offset))
	}
	m.proc = p
	return nil
}

// waitReady waits until the broker answers an MQTT CONNECT with a CONNACK, whether or not it
// accepts an anonymous client.
func (m *Mosquitto) waitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if p.exited() {
			return fmt.Errorf("mosquitto exited during start: %v", p.err)
		}
		err := mqttPing(m.Addr())
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mqttPing sends an MQTT 3.1.1 CONNECT and waits for the CONNACK.
func mqttPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	const id = "outpost-testserver-probe"
	connect := []byte{0x10, 12 + byte(len(id)), // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name and level (3.1.1)
		0x02, 0, 10, // clean session, keep alive 10 s
		0, byte(len(id))}
	if _, err := c.Write(append(connect, id...)); err != nil {
		return err
	}
	var connack [4]byte
	if _, err := io.ReadFull(c, connack[:]); err != nil {
		return fmt.Errorf("read CONNACK: %w", err)
	}
	if connack[0] != 0x20 || connack[1] != 2 {
		return fmt.Errorf("expected CONNACK, got % x", connack)
	}
	_, _ = c.Write([]byte{0xe0, 0}) // DISCONNECT; refused (anonymous) clients are closed anyway
	return nil
}

func (m *Mosquitto) stop(sig syscall.Signal) error {
	if m.proc == nil {
		return nil
	}
	p := m.proc
	m.proc = nil
	if err := p.stop(sig); err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	return nil
}

func (m *Mosquitto) cleanup() {
	if err := m.stop(syscall.SIGTERM); err != nil {
		m.t.Errorf("testserver: %v", err)
	}
	if m.t.Failed() {
		m.t.Logf("testserver: %s:\n%s", m.logPath(), readLogFrom(m.logPath(), 0))
	}
}

// passwordFile returns a Mosquitto password file for users, in the format mosquitto_passwd
// writes: user:$7$ITERATIONS$SALT$HASH, PBKDF2-HMAC-SHA512, base64.
func passwordFile(users map[string]string) (string, error) {
	const iterations = 101
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(users)) {
		if name == "" || strings.ContainsAny(name, ":\n") {
			return "", fmt.Errorf("mosquitto user name %q: must be non-empty, without ':' or newline", name)
		}
		salt := make([]byte, 12)
		_, _ = rand.Read(salt) // never fails
		hash, err := pbkdf2.Key(sha512.New, users[name], salt, iterations, sha512.Size)
		if err != nil {
			return "", fmt.Errorf("hash the password of mosquitto user %q: %w", name, err)
		}
		fmt.Fprintf(&b, "%s:$7$%d$%s$%s\n", name, iterations,
			base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(hash))
	}
	return b.String(), nil
}

// findMosquitto returns the path of the broker binary, which Debian installs in /usr/sbin
// (not on a normal user's PATH).
func findMosquitto() (string, bool) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, true
	}
	if isExecutable("/usr/sbin/mosquitto") {
		return "/usr/sbin/mosquitto", true
	}
	return "", false
}
