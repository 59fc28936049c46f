package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"

	"golang.org/x/sys/unix"
)

// The status socket is open to root and the outpost group, so that an
// operator (or a monitoring agent) in the group can read the status and
// the spool. The operations that change the spool (resend, purge,
// salvage, import) are for root and the daemon's own user only: the
// kernel tells who is on the other end of the socket (SO_PEERCRED), and
// anyone else gets 403.

type peerKey struct{}

// peer is the connecting process's credentials, known if ok.
type peer struct {
	uid uint32
	ok  bool
}

// peerContext records the peer's credentials for the connection's
// requests (http.Server.ConnContext).
func peerContext(ctx context.Context, c net.Conn) context.Context {
	var p peer
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
				if err == nil {
					p = peer{uid: cred.Uid, ok: true}
				}
			})
		}
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// onlyOwner serves h to root and the daemon's own user; anyone else (or a
// peer whose credentials are unknown) gets 403.
func (d *Daemon) onlyOwner(h http.HandlerFunc) http.HandlerFunc {
	own := uint32(os.Geteuid())
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		if p.ok && (p.uid == 0 || p.uid == own) {
			h(w, r)
			return
		}
		who := "an unknown user"
		if p.ok {
			who = fmt.Sprintf("uid %d", p.uid)
		}
		d.log.Warn("status socket: a spool change refused", "path", r.URL.Path, "peer", who)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]string{
			"error": fmt.Sprintf("%s changes the spool: only root or the daemon's user (uid %d) may, not %s (run it with sudo)", r.URL.Path, own, who),
		})
	}
}
