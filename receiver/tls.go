package receiver

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// certFiles serves the certificate in a pair of PEM files, read again
// when they change (a certbot renewal needs no restart): each handshake
// reads the two small files, and parses them only when their bytes
// differ from the pair in use. A key file that others may read is
// refused, as the other secrets are. A pair that does not load (the key
// written but not yet the certificate) leaves the one in use in place.
type certFiles struct {
	certPath, keyPath string
	log               *slog.Logger

	mu        sync.Mutex
	cert, key []byte // the files' contents of the pair in use
	pair      *tls.Certificate
}

// newCertFiles loads the pair, or fails naming the files.
func newCertFiles(certPath, keyPath string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certPath: certPath, keyPath: keyPath, log: log}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) reload() error {
	cert, err := os.ReadFile(c.certPath)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	key, err := os.ReadFile(c.keyPath)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	// As for the other secrets: a key that others may read is refused.
	if fi, err := os.Stat(c.keyPath); err != nil {
		return fmt.Errorf("tls key: %w", err)
	} else if err := checkSecretMode(c.keyPath, fi); err != nil {
		return fmt.Errorf("tls key %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pair != nil && bytes.Equal(cert, c.cert) && bytes.Equal(key, c.key) {
		return nil
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return fmt.Errorf("tls certificate %s and key %s: %w", c.certPath, c.keyPath, err)
	}
	if c.pair != nil {
		c.log.Info("tls certificate reloaded", "file", c.certPath)
	}
	c.cert, c.key, c.pair = cert, key, &pair
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (c *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if err := c.reload(); err != nil {
		c.log.Warn("tls certificate not reloaded, serving the one loaded before", "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pair, nil
}
