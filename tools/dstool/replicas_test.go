package main

import (
	"bytes"
	"encoding/json"
	"testing"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// TestWriteReplicas: set-replicas, join and leave print "ok" as seed 002
// shows, then the replica sites and the transitions pending; --json one
// object.
func TestWriteReplicas(t *testing.T) {
	resp := &dsdv1.UpdateReplicasResponse{Sites: []string{"a1", "b2"}, Transitions: 3}
	var out bytes.Buffer
	if err := writeReplicas(&out, resp, false); err != nil {
		t.Fatal(err)
	}
	if want := "ok\nreplica sites: a1 b2\ntransitions pending: 3 (dstool info shows them)\n"; out.String() != want {
		t.Fatalf("text:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if err := writeReplicas(&out, resp, true); err != nil {
		t.Fatal(err)
	}
	var j replicasJSON
	if err := json.Unmarshal(out.Bytes(), &j); err != nil || len(j.Sites) != 2 || j.Transitions != 3 {
		t.Fatalf("json: %v %s", err, out.String())
	}
}
