package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and client
// certificates named by their Common Name into dir.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
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
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key}
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns cert and key files for name (a server if server is true).
func (p *testPKI) issue(t *testing.T, name string, server bool) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func startTLSServer(t *testing.T, pki *testPKI, mutual bool) *Server {
	t.Helper()
	cert, key := pki.issue(t, "dsd", true)
	files := TLSFiles{CertFile: cert, KeyFile: key}
	if mutual {
		files.CACertFile = pki.caFile
	}
	cfg, err := LoadTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(db, Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", TLS: cfg, Roles: map[string]Role{"ops": RoleAdmin, "gw-1": RoleGateway}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		<-served
		db.Close()
	})
	return srv
}

func dialAs(t *testing.T, pki *testPKI, srv *Server, name string) *client.Client {
	t.Helper()
	files := client.TLSFiles{CAFile: pki.caFile}
	if name != "" {
		files.CertFile, files.KeyFile = pki.issue(t, name, false)
	}
	opt, err := client.WithTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(srv.GRPCAddr(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMutualTLSRoles(t *testing.T) {
	pki := newTestPKI(t)
	srv := startTLSServer(t, pki, true)
	ctx := context.Background()
	admin := func(c *client.Client) error {
		_, err := c.Admin.AddGeneration(ctx, &dsdv1.AddGenerationRequest{})
		return err
	}
	if err := admin(dialAs(t, pki, srv, "ops")); err != nil {
		t.Errorf("admin client: %v", err)
	}
	gw := dialAs(t, pki, srv, "gw-1")
	if err := admin(gw); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gateway client adding a generation: %v; want PermissionDenied", err)
	}
	if _, err := gw.Storage.Info(ctx, &dsdv1.InfoRequest{}); err != nil {
		t.Errorf("gateway client reading info: %v", err)
	}
	svc := dialAs(t, pki, srv, "unmapped-service")
	if _, err := svc.Admin.DropGeneration(ctx, &dsdv1.DropGenerationRequest{Shard: 0, Generation: 1}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("unmapped client dropping a generation: %v; want PermissionDenied", err)
	}
	if _, err := dialAs(t, pki, srv, "").Storage.Info(ctx, &dsdv1.InfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("client without a certificate: %v; want the handshake refused (Unavailable)", err)
	}
}

func TestTLSListenersAllowNonLoopbackAndServeHTTPS(t *testing.T) {
	pki := newTestPKI(t)
	srv := startTLSServer(t, pki, false)
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get("https://" + srv.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("https healthz: %d", resp.StatusCode)
	}
	c := dialAs(t, pki, srv, "")
	if _, err := c.Admin.AddGeneration(context.Background(), &dsdv1.AddGenerationRequest{}); err != nil {
		t.Errorf("TLS without client verification trusts the caller as admin: %v", err)
	}
	if err := checkLoopback("0.0.0.0:7070", true); err != nil {
		t.Error(err)
	}
}
