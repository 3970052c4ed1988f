package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/testpki"
)

// TestMethodTableCoversAPI walks the method descriptors of every service
// dsd registers: each method needs a row in methodRules (with at least one
// role), and each row names a registered method.
func TestMethodTableCoversAPI(t *testing.T) {
	_, srv := startServer(t)
	registered := map[string]bool{}
	for svc, info := range srv.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			registered[name] = true
			rule, ok := methodRules[name]
			if !ok {
				t.Errorf("%s has no row in methodRules (authz.go): every method needs its roles", name)
				continue
			}
			if len(rule.roles) == 0 {
				t.Errorf("%s: a row with no role", name)
			}
		}
	}
	if len(registered) == 0 {
		t.Fatal("no registered methods")
	}
	for name := range methodRules {
		if !registered[name] {
			t.Errorf("methodRules names %s, which dsd does not register", name)
		}
	}
}

// TestUnknownMethodIsDenied: deny by default, for every role.
func TestUnknownMethodIsDenied(t *testing.T) {
	a := newAuthorizer(false, nil, RoleService, nil) // no mTLS: the caller is admin
	_, _, err := a.authorize(context.Background(), "/strata.dsd.v1.StorageService/NoSuchMethod")
	if !errors.Is(err, errPermissionDenied) || status.Code(statusFor(err)) != codes.PermissionDenied {
		t.Fatalf("a method without a row: %v; want PermissionDenied", err)
	}
}

// TestRolesPerMethod: a service may read but not administer, open
// sessions or hold a gateway link; only an admin adds and drops
// generations and deletes retained messages and unguarded sessions.
func TestRolesPerMethod(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	ctx := context.Background()
	svc := dialAs(t, pki, srv, "svc") // unmapped: default_role service
	gw := dialAs(t, pki, srv, "gw-1")
	ops := dialAs(t, pki, srv, "ops")
	denied := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v; want PermissionDenied", what, err)
		}
	}
	for name, c := range map[string]*client.Client{"service": svc, "gateway": gw} {
		_, err := c.Admin.AddGeneration(ctx, &dsdv1.AddGenerationRequest{})
		denied(name+" AddGeneration", err)
		_, err = c.Admin.DropGeneration(ctx, &dsdv1.DropGenerationRequest{Shard: 0, Generation: 1})
		denied(name+" DropGeneration", err)
		_, err = c.Retained().DeleteRetained(ctx, &dsdv1.DeleteRetainedRequest{Topic: "t"})
		denied(name+" DeleteRetained", err)
		_, err = c.Sessions().DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "c"})
		denied(name+" unguarded DeleteSession", err)
	}
	_, err := svc.Sessions().OpenSession(ctx, openReq("c", "", "gw-1", 1))
	denied("service OpenSession", err)
	_, err = gw.Admin.ListGenerations(ctx, &dsdv1.ListGenerationsRequest{})
	denied("gateway ListGenerations", err)
	if _, err := svc.Admin.ListGenerations(ctx, &dsdv1.ListGenerationsRequest{}); err != nil {
		t.Errorf("service ListGenerations: %v", err)
	}
	if _, err := svc.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "svc", Messages: []*storagev1.Message{msg("t", "x")}}); err != nil {
		t.Errorf("service Store: %v", err)
	}
	if _, err := ops.Retained().DeleteRetained(ctx, &dsdv1.DeleteRetainedRequest{Topic: "t"}); err != nil {
		t.Errorf("admin DeleteRetained: %v", err)
	}
	if _, err := ops.Admin.AddGeneration(ctx, &dsdv1.AddGenerationRequest{}); err != nil {
		t.Errorf("admin AddGeneration: %v", err)
	}
}

// TestServiceCertificateRefusedOnGatewayLink: only a gateway (or an
// admin) holds a GatewayLink.
func TestServiceCertificateRefusedOnGatewayLink(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	_, err := dialAs(t, pki, srv, "svc").OpenLink(context.Background(), "svc", 1)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("service opening a gateway link: %v; want PermissionDenied", err)
	}
}

// TestGatewayCertificateBoundToGatewayID: a gateway certificate registers
// and opens sessions only under its own name (Common Name or a DNS SAN),
// and cannot change the sessions another gateway opened.
func TestGatewayCertificateBoundToGatewayID(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	ctx := context.Background()
	gw1 := dialAs(t, pki, srv, "gw-1")
	gw2 := dialAs(t, pki, srv, "gw-2")

	if _, err := gw2.OpenLink(ctx, "gw-1", 1); status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "gw-1") {
		t.Errorf("gw-2 registering as gw-1: %v; want PermissionDenied", err)
	}
	l, err := gw1.OpenLink(ctx, "gw-1", 1)
	if err != nil {
		t.Fatalf("gw-1 registering as itself: %v", err)
	}
	l.Close()
	// A DNS subject alternative name is a name of the certificate too.
	cert, key := pki.IssueWith(t, "gw-san", testpki.IssueOptions{DNSNames: []string{"gw-east.example"}})
	opt, err := client.WithTLS(client.TLSFiles{CAFile: pki.CAFile, CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	san, err := client.Dial(srv.GRPCAddr(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer san.Close()
	l, err = san.OpenLink(ctx, "gw-east.example", 1)
	if err != nil {
		t.Fatalf("registering under a DNS SAN: %v", err)
	}
	l.Close()

	if _, err := gw2.Sessions().OpenSession(ctx, openReq("car", "", "gw-1", 1)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gw-2 opening a session for gw-1: %v; want PermissionDenied", err)
	}
	o, err := gw1.Sessions().OpenSession(ctx, openReq("car", "", "gw-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	// gw-2 holds gw-1's guard (guards are small counters): still not its session.
	commit := &dsdv1.CommitSessionRequest{Commit: &storagev1.SessionCommit{ClientId: "car", Guard: o.GetGuard(), LastId: ptr(uint64(5))}}
	if _, err := gw2.Sessions().CommitSession(ctx, commit); status.Code(err) != codes.Aborted {
		t.Errorf("gw-2 committing gw-1's session: %v; want Aborted", err)
	}
	if _, err := gw2.Sessions().Release(ctx, &dsdv1.ReleaseRequest{ClientId: "car", Guard: o.GetGuard(), PacketId: 1}); status.Code(err) != codes.Aborted {
		t.Errorf("gw-2 releasing on gw-1's session: %v; want Aborted", err)
	}
	if _, err := gw2.Sessions().Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: "car", Guard: o.GetGuard()}); status.Code(err) != codes.Aborted {
		t.Errorf("gw-2 disconnecting gw-1's session: %v; want Aborted", err)
	}
	if _, err := gw2.Sessions().DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "car", Guard: ptr(o.GetGuard())}); status.Code(err) != codes.Aborted {
		t.Errorf("gw-2 deleting gw-1's session: %v; want Aborted", err)
	}
	if _, err := gw1.Sessions().CommitSession(ctx, commit); err != nil {
		t.Errorf("gw-1 committing its session: %v", err)
	}
	if _, err := gw1.Sessions().Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: "car", Guard: o.GetGuard()}); err != nil {
		t.Errorf("gw-1 disconnecting its session: %v", err)
	}
}

// TestSessionGuardsHiddenFromServices: GetSession and ListSessions show a
// guard only to an admin and to the gateway that owns the session.
func TestSessionGuardsHiddenFromServices(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	ctx := context.Background()
	o, err := dialAs(t, pki, srv, "gw-1").Sessions().OpenSession(ctx, openReq("car", "", "gw-1", 1))
	if err != nil || o.GetGuard() == 0 {
		t.Fatalf("open: %v %v", o, err)
	}
	for name, want := range map[string]uint64{"svc": 0, "gw-2": 0, "gw-1": o.GetGuard(), "ops": o.GetGuard()} {
		ss := dialAs(t, pki, srv, name).Sessions()
		g, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: "car"})
		if err != nil {
			t.Fatalf("%s GetSession: %v", name, err)
		}
		if got := g.GetSession().GetRecord().GetGuard(); got != want {
			t.Errorf("%s GetSession: guard %d, want %d", name, got, want)
		}
		l, err := ss.ListSessions(ctx, &dsdv1.ListSessionsRequest{})
		if err != nil || len(l.GetSessions()) != 1 {
			t.Fatalf("%s ListSessions: %v %v", name, l, err)
		}
		wantListed := uint64(0)
		if name == "ops" {
			wantListed = o.GetGuard()
		}
		if got := l.GetSessions()[0].GetRecord().GetGuard(); got != wantListed {
			t.Errorf("%s ListSessions: guard %d, want %d", name, got, wantListed)
		}
	}
}

// TestTLSRefusesWrongCAAndExpiredCert: a client certificate from another
// CA, or an expired one, does not get through the handshake.
func TestTLSRefusesWrongCAAndExpiredCert(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	other := testpki.New(t)
	dial := func(cert, key string) *client.Client {
		t.Helper()
		opt, err := client.WithTLS(client.TLSFiles{CAFile: pki.CAFile, CertFile: cert, KeyFile: key})
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
	ctx := context.Background()
	cert, key := other.Issue(t, "ops", false) // the admin's name, from the wrong CA
	if _, err := dial(cert, key).Storage.Info(ctx, &dsdv1.InfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("certificate of another CA: %v; want the handshake refused (Unavailable)", err)
	}
	cert, key = pki.IssueExpired(t, "ops")
	if _, err := dial(cert, key).Storage.Info(ctx, &dsdv1.InfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("expired certificate: %v; want the handshake refused (Unavailable)", err)
	}
}
