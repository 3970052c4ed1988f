package auth

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
)

func TestCertUsername(t *testing.T) {
	cert := &x509.Certificate{
		SerialNumber:   big.NewInt(7),
		Subject:        pkix.Name{CommonName: "device-1"},
		DNSNames:       []string{"dev1.example.com", "other.example.com"},
		EmailAddresses: []string{"ops@example.com"},
	}
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
	for field, want := range map[string]string{"cn": "device-1", "san_dns": "dev1.example.com", "san_email": "ops@example.com"} {
		if got, err := CertUsername(verified, field); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", field, got, err, want)
		}
	}
	bare := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{SerialNumber: big.NewInt(8)}}}}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	for name, tc := range map[string]struct {
		st    *tls.ConnectionState
		field string
	}{
		"no TLS":        {nil, "cn"},
		"not verified":  {unverified, "cn"},
		"empty CN":      {bare, "cn"},
		"no DNS SAN":    {bare, "san_dns"},
		"no e-mail SAN": {bare, "san_email"},
		"unknown field": {verified, "serial"},
	} {
		if _, err := CertUsername(tc.st, tc.field); !errors.Is(err, ErrNotAuthorized) {
			t.Errorf("%s: err %v, want ErrNotAuthorized", name, err)
		}
	}
}
