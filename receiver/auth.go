package receiver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/receiver/store"
)

// tokenPrefix marks Outpost device tokens, so a leaked one is recognisable
// (secret scanners) and a token pasted into the wrong place is obvious.
const tokenPrefix = "otk_"

// NewToken returns a new random device token (256 bits) and the hash the
// store keeps in its place.
func NewToken() (token string, hash []byte) {
	var b [32]byte
	rand.Read(b[:]) // never returns an error (crypto/rand, Go 1.24+)
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, store.HashToken(token)
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// ReadSecretFile reads a secret (a password) from path, without the
// surrounding whitespace. It refuses a file that others may read (mode
// o+r or o+w): a secret lives in a file of mode 0600 or 0640, never on the
// command line.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if err := checkSecretMode(path, fi); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", err
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}

// checkSecretMode refuses a secret's file that others may read or write.
func checkSecretMode(path string, fi os.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o006 != 0 {
		return fmt.Errorf("%s has mode %04o, readable or writable by others: chmod o-rw it (0600 or 0640)", path, perm)
	}
	return nil
}

// deviceStore is what deviceCache asks the store.
type deviceStore interface {
	CheckDevice(ctx context.Context, id string) error
	DevicesGeneration(ctx context.Context) (int64, error)
}

// DefaultDeviceCacheTTL bounds how long MQTT ingest goes on trusting
// what it knows of a device: a revoke, an add or a rotation committed on
// any replica (or by the command line) reaches every replica's cache
// within this time.
const DefaultDeviceCacheTTL = time.Second

// maxCachedDevices bounds the cache; past it, it starts again empty.
const maxCachedDevices = 100_000

// deviceCache answers whether a device may send (registered, not
// revoked) for MQTT ingest, which has no token to look up per message.
// It keeps the store's answers while the store's device generation (a
// counter every add, revoke and rotation increases in its transaction)
// stays what it was, and reads the generation again when ttl has passed
// since it last did: one small query per ttl for all devices, and a
// change made anywhere is seen within ttl.
type deviceCache struct {
	store deviceStore
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex
	gen     int64
	checked time.Time        // when gen was last read; zero: never
	known   map[string]error // device → CheckDevice's answer (nil: may send)
}

func newDeviceCache(st deviceStore, ttl time.Duration, now func() time.Time) *deviceCache {
	if ttl <= 0 {
		ttl = DefaultDeviceCacheTTL
	}
	if now == nil {
		now = time.Now
	}
	return &deviceCache{store: st, ttl: ttl, now: now, known: map[string]error{}}
}

// check returns nil when device may send, store.ErrUnknownDevice or
// store.ErrRevoked when it may not, or the store's failure; fresh says
// the answer came from the store (not the cache), for logging it once.
func (c *deviceCache) check(ctx context.Context, device string) (err error, fresh bool) {
	c.mu.Lock()
	if now := c.now(); c.checked.IsZero() || now.Sub(c.checked) >= c.ttl {
		c.mu.Unlock()
		gen, err := c.store.DevicesGeneration(ctx)
		if err != nil {
			return err, true
		}
		c.mu.Lock()
		if gen != c.gen || len(c.known) > maxCachedDevices {
			c.gen, c.known = gen, map[string]error{}
		}
		c.checked = now
	}
	if e, ok := c.known[device]; ok {
		c.mu.Unlock()
		return e, false
	}
	gen := c.gen
	c.mu.Unlock()
	err = c.store.CheckDevice(ctx, device)
	if err != nil && !errors.Is(err, store.ErrUnknownDevice) && !errors.Is(err, store.ErrRevoked) {
		return err, true // not an answer to keep
	}
	c.mu.Lock()
	if c.gen == gen { // else a change was seen meanwhile: ask again next time
		c.known[device] = err
	}
	c.mu.Unlock()
	return err, true
}
