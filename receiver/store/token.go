package store

import (
	"crypto/sha256"
	"crypto/subtle"
)

// HashToken returns the hash under which a token is stored. A plain SHA-256
// is enough for random 256-bit tokens: there is nothing to brute-force.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// HashesEqual compares two token hashes in constant time. A store finds
// the device by hash; comparing again keeps the check itself free of
// timing differences whatever the database does.
func HashesEqual(a, b []byte) bool {
	return len(a) == sha256.Size && subtle.ConstantTimeCompare(a, b) == 1
}
