package storage

import (
	"bytes"
	"testing"

	"github.com/stratamq/strata/dsd/raftlog"
)

// TestRaftKeyspaceReserved: the prefix raftlog writes under is the one this
// package reserves, so no keyspace of the shards can collide with it.
func TestRaftKeyspaceReserved(t *testing.T) {
	if want := shardPrefix(siteShard, tagRaft); !bytes.Equal(raftlog.Prefix, want) {
		t.Fatalf("raftlog.Prefix = %x, storage reserves %x", raftlog.Prefix, want)
	}
}
