package server

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/testutil/testpki"
)

func startTLSServer(t *testing.T, pki *testpki.PKI, mutual bool) *Server {
	t.Helper()
	cert, key := pki.Issue(t, "dsd", true)
	files := TLSFiles{CertFile: cert, KeyFile: key}
	if mutual {
		files.CACertFile = pki.CAFile
	}
	cfg, err := LoadTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := listenAndServe(t, db, Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", TLS: cfg, Roles: map[string]Role{"ops": RoleAdmin, "gw-1": RoleGateway, "gw-2": RoleGateway, "gw-san": RoleGateway}})
	return srv
}

func dialAs(t *testing.T, pki *testpki.PKI, srv *Server, name string) *client.Client {
	t.Helper()
	files := client.TLSFiles{CAFile: pki.CAFile}
	if name != "" {
		files.CertFile, files.KeyFile = pki.Issue(t, name, false)
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
	pki := testpki.New(t)
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

// TestLoopbackTLSWithoutClientCertsServesHTTPSAndTrustsCallers: without
// client certificates a caller of a loopback listener is admin, as it is
// without TLS.
func TestLoopbackTLSWithoutClientCertsServesHTTPSAndTrustsCallers(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, false)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool()}}}
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
		t.Errorf("loopback TLS without client verification trusts the caller as admin: %v", err)
	}
}

// TestNonLoopbackNeedsMutualTLS: TLS without client certificates on a
// non-loopback address would make every network caller admin; dsd refuses
// to start.
func TestNonLoopbackNeedsMutualTLS(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Issue(t, "dsd", true)
	cfg, err := LoadTLS(TLSFiles{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := Listen(db, Options{GRPCListen: "0.0.0.0:0", HTTPListen: "127.0.0.1:0", TLS: cfg})
	if err == nil {
		srv.grpcLis.Close()
		srv.httpLis.Close()
		t.Fatal("dsd listened on 0.0.0.0 with TLS but no client CA; want a refusal")
	}
	if !strings.Contains(err.Error(), "mutual TLS") {
		t.Errorf("refusal %q does not name mutual TLS", err)
	}
}
