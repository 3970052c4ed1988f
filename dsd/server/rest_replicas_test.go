package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
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
