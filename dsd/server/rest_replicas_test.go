package server

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/testutil/testpki"
)

// TestReplicasChangesWithoutCluster: a dsd without a metadata group
// answers the replica changes of REST and AdminService clearly (501,
// UNIMPLEMENTED); a malformed body or another storage is refused first.
func TestReplicasChangesWithoutCluster(t *testing.T) {
	c, srv := startServer(t)
	base := "http://" + srv.HTTPAddr()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"PUT", "/ds/storages/messages/replicas", `["a1"]`, http.StatusNotImplemented},
		{"PUT", "/api/v5/ds/storages/messages/replicas", `{"not":"a list"}`, http.StatusBadRequest},
		{"PUT", "/ds/storages/other/replicas", `["a1"]`, http.StatusNotFound},
		{"PUT", "/ds/storages/messages/replicas/a1", "", http.StatusNotImplemented},
		{"DELETE", "/ds/storages/messages/replicas/a1", "", http.StatusNotImplemented},
	} {
		if code, body := do(tc.method, tc.path, tc.body); code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.code)
		}
	}
	_, err := c.Admin.UpdateReplicas(context.Background(), &dsdv1.UpdateReplicasRequest{Change: &dsdv1.UpdateReplicasRequest_Join{Join: "a1"}})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("UpdateReplicas without a cluster: %v", err)
	}
}

// TestReplicasChangesNeedAdminWithMutualTLS: with client certificates
// required, changing the replica sites over REST or AdminService needs the
// admin role: a service certificate is refused (403, PERMISSION_DENIED);
// an admin's request goes through to the cluster (none here: 501).
func TestReplicasChangesNeedAdminWithMutualTLS(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	put := func(name string) int {
		t.Helper()
		cert, key := pki.Issue(t, name, false)
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool(), Certificates: []tls.Certificate{pair}}}}
		req, err := http.NewRequest(http.MethodPut, "https://"+srv.HTTPAddr()+"/ds/storages/messages/replicas/a1", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("svc"); code != http.StatusForbidden {
		t.Errorf("PUT with a service certificate: %d, want 403", code)
	}
	if code := put("ops"); code != http.StatusNotImplemented {
		t.Errorf("PUT with an admin certificate: %d, want 501 (no cluster)", code)
	}
	req := &dsdv1.UpdateReplicasRequest{Change: &dsdv1.UpdateReplicasRequest_Leave{Leave: "a1"}}
	if _, err := dialAs(t, pki, srv, "svc").Admin.UpdateReplicas(context.Background(), req); status.Code(err) != codes.PermissionDenied {
		t.Errorf("UpdateReplicas with a service certificate: %v", err)
	}
}
