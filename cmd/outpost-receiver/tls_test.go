package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/receiver"
	"github.com/outpost-iot/outpost/uplink"
)

// testCA is a throwaway certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "outpost test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a server certificate for 127.0.0.1 with serial into
// certPath and its key into keyPath.
func (ca *testCA) issue(t *testing.T, serial int64, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "receiver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// As certbot does: new files renamed into place.
	for path, b := range map[string][]byte{
		certPath: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPath:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(path+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServeTLS: with --tls-cert and --tls-key (here from
// OUTPOST_TLS_CERT/KEY) the receiver serves HTTPS, which the device's
// HTTP uplink accepts with the CA in its ca_file; a renewed certificate
// written over the files is served from the next handshake, without a
// restart.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	ca.issue(t, 100, certFile, keyFile)
	db := "sqlite:" + filepath.Join(dir, "r.db")
	st, err := receiver.OpenMigrated(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	token, err := receiver.AddDevice(t.Context(), st, "pi-07")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": db, "OUTPOST_LISTEN": "127.0.0.1:0", "OUTPOST_TLS_CERT": certFile, "OUTPOST_TLS_KEY": keyFile}
	addr, log := serveT(t, env)
	if !strings.Contains(log.String(), "scheme=https") {
		t.Errorf("serve log does not say https:\n%s", log)
	}

	up, err := uplink.NewHTTP(uplink.HTTPOptions{URL: "https://" + addr, TokenFile: tokenFile, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if err := up.SendStatus(t.Context(), []byte(`{"device":"pi-07","uptime_s":1}`)); err != nil {
		t.Fatalf("heartbeat over HTTPS with ca_file: %v", err)
	}
	// Without the CA the device refuses the receiver.
	bare, err := uplink.NewHTTP(uplink.HTTPOptions{URL: "https://" + addr, TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if err := bare.SendStatus(t.Context(), []byte(`{"device":"pi-07"}`)); err == nil {
		t.Error("heartbeat without the CA succeeded; want a certificate error")
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	served := func() int64 {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatalf("tls dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := served(); s != 100 {
		t.Errorf("serial served = %d; want 100", s)
	}
	ca.issue(t, 101, certFile, keyFile)
	if s := served(); s != 101 {
		t.Errorf("serial served after renewal = %d; want 101 (the files re-read)", s)
	}
	// A half-written renewal (a key that does not match) keeps the pair in use.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s := served(); s != 101 {
		t.Errorf("serial served with a broken key file = %d; want 101 still", s)
	}
}

func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	newTestCA(t).issue(t, 7, cert, key)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "/x/cert.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-cert", cert, "--tls-key", key}, "tls key " + key + " has mode 0644, readable or writable by others"},
		{[]string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, "--tls-cert, --tls-key: tls certificate: open /nonexistent/cert.pem"},
	} {
		if _, err := serveConfigOf(t, nil, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error = %v; want %q", c.args, err, c.want)
		}
	}
}
