package receiver

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

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
	if perm := fi.Mode().Perm(); perm&0o006 != 0 {
		return "", fmt.Errorf("%s has mode %04o, readable or writable by others: chmod o-rw it (0600 or 0640)", path, perm)
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
