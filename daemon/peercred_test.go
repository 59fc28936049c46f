package daemon

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// peerRequests are what the test asks of the status socket, as another
// user: the read-only ones first, then those that change the spool.
var peerRequests = []struct {
	method, path string
	changes      bool
}{
	{http.MethodGet, "/v1/status", false},
	{http.MethodGet, "/v1/spool/stats", false},
	{http.MethodGet, "/v1/spool/dead", false},
	{http.MethodGet, "/v1/spool/export?limit=1", false},
	{http.MethodPost, "/v1/spool/resend?stream=0000000000000001&from=1", true},
	{http.MethodPost, "/v1/spool/purge?stream=0000000000000001&from=1", true},
	{http.MethodPost, "/v1/spool/salvage?file=/nonexistent", true},
	{http.MethodPost, "/v1/import", true},
}

// askSocket sends peerRequests and returns "METHOD PATH STATUS" lines.
func askSocket(socket string) (string, error) {
	c := socketClient(socket)
	var out strings.Builder
	for _, pr := range peerRequests {
		req, err := http.NewRequest(pr.method, "http://outpost"+pr.path, strings.NewReader(""))
		if err != nil {
			return "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&out, "%s %s %d %s\n", pr.method, pr.path, resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 300)])))
	}
	return out.String(), nil
}

// TestPeerHelper is the other user's process (run by
// TestStatusSocketChangesOnlyForOwner, not on its own).
func TestPeerHelper(t *testing.T) {
	socket := os.Getenv("OUTPOST_TEST_PEER_SOCKET")
	if socket == "" {
		t.Skip("a helper process of TestStatusSocketChangesOnlyForOwner")
	}
	out, err := askSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Print(out)
}

// Anyone who may connect to the status socket (the outpost group) reads
// status and the spool; only root and the daemon's own user may change
// the spool (resend, purge, salvage, import): SO_PEERCRED tells who it is.
func TestStatusSocketChangesOnlyForOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to connect as another user")
	}
	d := startDaemon(t, simConfig)
	waitStatus(t, d.socket(), func(s Status) bool { return s.Device == "test-pi" })
	// The other user reaches the socket as a group member would: through
	// traversable directories, with the socket's group (0660 root:root).
	for _, dir := range []string{d.dir, filepath.Dir(d.dir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary, where the other user may run it.
	bin := filepath.Join(d.dir, "peer.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestPeerHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "OUTPOST_TEST_PEER_SOCKET="+d.socket())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 0}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the helper as uid 65534: %v\n%s", err, out)
	}
	for _, pr := range peerRequests {
		prefix := pr.method + " " + pr.path + " "
		var line string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, prefix) {
				line = l
			}
		}
		switch {
		case line == "":
			t.Errorf("%s: no answer in the helper's output:\n%s", prefix, out)
		case pr.changes && !strings.HasPrefix(line, prefix+"403 ") || pr.changes && !strings.Contains(line, "uid 65534"):
			t.Errorf("as uid 65534: %s; want 403 naming the uid", line)
		case !pr.changes && !strings.HasPrefix(line, prefix+"200 "):
			t.Errorf("as uid 65534: %s; want 200 (reading stays open)", line)
		}
	}
	if !strings.Contains(d.log.String(), "a spool change refused") {
		t.Errorf("the daemon did not log the refusals:\n%s", d.log.String())
	}

	// Root (this process) may change the spool: the answers are the
	// operations' own (an unknown range, a missing file), never 403.
	mine, err := askSocket(d.socket())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(mine, " 403 ") {
		t.Errorf("as root:\n%s\nwant no 403", mine)
	}
}
