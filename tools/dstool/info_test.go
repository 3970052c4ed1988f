package main

import (
	"bytes"
	"strings"
	"testing"

	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// TestInfoTextSections: the text of `dstool info` has seed 002's sections,
// a down site marked "(x) down", and REPLICA TRANSITIONS as "+site -site"
// per shard, before this site's own storage.
func TestInfoTextSections(t *testing.T) {
	a, b, c := "5c6028d6ce9459c7", "d8894f95dc86dfdb", "f4e92dea197c8ebc"
	add := clusterv1.TransitionOp_TRANSITION_OP_ADD
	del := clusterv1.TransitionOp_TRANSITION_OP_DEL
	info := &dsdv1.InfoResponse{
		Site: b, NShards: 2, DataDirFormat: 1, Version: "1.2.3",
		Shards: []*dsdv1.ShardInfo{{Shard: 0, CurrentGeneration: 1}, {Shard: 1, CurrentGeneration: 1}},
		Cluster: &dsdv1.ClusterInfo{
			NSites: 3, Leader: a, Term: 4, CommitIndex: 12, AppliedIndex: 12,
			State: &clusterv1.MetaState{
				Sites: []*clusterv1.Site{{Id: a, Node: "n2", Up: true}, {Id: b, Node: "n1", Up: true}, {Id: c, Node: "n3"}},
				Messages: &clusterv1.DurableStorage{Name: "messages", NShards: 2, Shards: []*clusterv1.ShardPlacement{
					{Shard: 0, Replicas: []string{a, b}},
					{Shard: 1, Replicas: []string{a}, Transitions: []*clusterv1.Transition{{Op: add, Site: c}, {Op: del, Site: a}}},
				}},
			},
		},
	}
	var out bytes.Buffer
	writeInfoText(&out, info)
	want := `THIS SITE:
d8894f95dc86dfdb
SITES:
5c6028d6ce9459c7 'n2' up
d8894f95dc86dfdb 'n1' up
f4e92dea197c8ebc 'n3' (x) down
SHARDS:
Shard          Replicas
messages/0     5c6028d6ce9459c7 d8894f95dc86dfdb
messages/1     5c6028d6ce9459c7
REPLICA TRANSITIONS:
Shard          Transitions
messages/1     +f4e92dea197c8ebc -5c6028d6ce9459c7
METADATA GROUP:
leader 5c6028d6ce9459c7  term 4  commit 12  applied 12

site      d8894f95dc86dfdb
version   1.2.3
`
	if !strings.HasPrefix(out.String(), want) {
		t.Fatalf("dstool info:\n%s\nwant it to start with:\n%s", out.String(), want)
	}
}
