package auth

import (
	"crypto/tls"
	"fmt"
)

// The certificate fields a listener's use_identity_as_username may name.
const (
	CertCommonName = "cn"
	CertSANDNS     = "san_dns"
	CertSANEmail   = "san_email"
)

// CertUsername returns the username a verified client certificate gives
// (listeners.*.use_identity_as_username): the subject's Common Name for
// "cn", the first DNS or e-mail Subject Alternative Name for "san_dns" or
// "san_email". The certificate is the leaf of the first chain the TLS
// handshake verified against the listener's cacertfile; without one, or
// when the field is empty, the error wraps ErrNotAuthorized (CONNACK 0x87,
// 3.1.1: 0x05). The identity is authenticated by the certificate: no
// password is checked, as mosquitto's use_identity_as_username does.
func CertUsername(st *tls.ConnectionState, field string) (string, error) {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", fmt.Errorf("%w: no verified client certificate", ErrNotAuthorized)
	}
	cert := st.VerifiedChains[0][0]
	var name string
	switch field {
	case CertCommonName:
		name = cert.Subject.CommonName
	case CertSANDNS:
		if len(cert.DNSNames) > 0 {
			name = cert.DNSNames[0]
		}
	case CertSANEmail:
		if len(cert.EmailAddresses) > 0 {
			name = cert.EmailAddresses[0]
		}
	default:
		return "", fmt.Errorf("%w: unknown certificate identity field %q", ErrNotAuthorized, field)
	}
	if name == "" {
		return "", fmt.Errorf("%w: the client certificate (serial %s) has no %s", ErrNotAuthorized, cert.SerialNumber, field)
	}
	return name, nil
}
