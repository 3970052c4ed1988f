// Package testpki makes a throwaway certificate authority for tests: a CA,
// server certificates for 127.0.0.1 and client certificates named by their
// Common Name, written as PEM files into a test's temporary directory.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a test certificate authority.
type PKI struct {
	dir string
	// CA is the authority's certificate; CAFile holds it as PEM.
	CA     *x509.Certificate
	CAFile string
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// New creates a CA valid for an hour around now.
func New(t testing.TB) *PKI {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "strata test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{dir: t.TempDir(), CA: ca, key: key}
	p.serial.Store(1)
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

// Pool returns a certificate pool holding the CA.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	return pool
}

// Issue returns the PEM certificate and key files of a certificate for name:
// a server certificate for 127.0.0.1 when server is true, else a client one.
// It is valid from an hour ago to an hour from now.
func (p *PKI) Issue(t testing.TB, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	return p.IssueWith(t, name, IssueOptions{Server: server})
}

// IssueExpired returns a client certificate for name that expired a
// minute ago (valid from two hours ago).
func (p *PKI) IssueExpired(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	return p.IssueWith(t, name, IssueOptions{NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Minute)})
}

// IssueOptions shape a certificate of IssueWith. The zero value is a client
// certificate valid from an hour ago to an hour from now.
type IssueOptions struct {
	// Server makes a server certificate for 127.0.0.1.
	Server bool
	// ClientToo, with Server, makes it good for client authentication too:
	// a dsd site's certificate, which it also dials other sites with.
	ClientToo bool
	// NotBefore and NotAfter default to an hour around now.
	NotBefore, NotAfter time.Time
	// DNSNames are added as DNS subject alternative names.
	DNSNames []string
	// FileName names the PEM files (default: name); give one when the same
	// name is issued twice.
	FileName string
}

// IssueWith returns the PEM certificate and key files of a certificate for
// name shaped by o.
func (p *PKI) IssueWith(t testing.TB, name string, o IssueOptions) (certFile, keyFile string) {
	t.Helper()
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(time.Hour)
	}
	if o.FileName == "" {
		o.FileName = name
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     o.DNSNames,
	}
	if o.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if o.ClientToo {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, o.FileName+".pem", "CERTIFICATE", der), p.write(t, o.FileName+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func (p *PKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
