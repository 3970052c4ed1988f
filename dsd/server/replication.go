package server

import (
	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/storage"
)

// ShardMachine is db as dsd/cluster's shard groups drive it: a shard the
// allocation replicates over this site and others takes its commands from
// its raft group (storage.DB.SetReplicator, ApplyReplicated).
func ShardMachine(db *storage.DB) cluster.ShardMachine { return shardMachine{db} }

type shardMachine struct{ *storage.DB }

func (m shardMachine) Attach(shard int, r cluster.ShardReplica) error {
	if r == nil {
		return m.SetReplicator(shard, nil)
	}
	return m.SetReplicator(shard, r)
}
