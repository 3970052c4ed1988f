// Package tlsconf turns the PEM files of a TLS set-up into a tls.Config, the
// same way for dsd's listeners, the gateway's tls and wss listeners and the
// client of dsd: TLS 1.2 at least, a key pair, and a pool of CA
// certificates to verify the peer against.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Server returns the configuration of a TLS listener with the key pair in
// certFile and keyFile. When caFile is set, client certificates are
// verified against its certificates and auth says whether one is required
// (tls.RequireAndVerifyClientCert) or only checked when given
// (tls.VerifyClientCertIfGiven); without caFile no client certificate is
// asked for.
func Server(certFile, keyFile, caFile string, auth tls.ClientAuthType) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := CertPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = auth
	}
	return cfg, nil
}

// CertPool reads the PEM certificates in file; a file without one is an
// error.
func CertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
