package tlsconf

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratamq/strata/internal/testutil/testpki"
)

func TestServer(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Issue(t, "dsd", true)

	cfg, err := Server(cert, key, "", tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 || cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil {
		t.Errorf("without a CA file: %+v", cfg)
	}

	cfg, err = Server(cert, key, pki.CAFile, tls.VerifyClientCertIfGiven)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs == nil {
		t.Errorf("with a CA file: client auth %v, pool %v", cfg.ClientAuth, cfg.ClientCAs)
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("no pem here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Server(cert, key, empty, tls.RequireAndVerifyClientCert); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
	if _, err := Server(cert, filepath.Join(t.TempDir(), "missing.key"), "", tls.NoClientCert); err == nil {
		t.Error("a missing key file was accepted")
	}
}
