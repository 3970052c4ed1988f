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

// Attach passes r on: a nil ShardReplica converts to a nil Replicator (a
// local shard again).
func (m shardMachine) Attach(shard int, r cluster.ShardReplica) error {
	return m.SetReplicator(shard, r)
}

// OpenSnapshot opens a consistent view of the shard's state.
func (m shardMachine) OpenSnapshot(shard int) (cluster.ShardSnapshot, error) {
	s, err := m.OpenShardSnapshot(shard)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// InstallSnapshot replaces the shard's state with a snapshot's.
func (m shardMachine) InstallSnapshot(shard int, next func() ([]byte, error), durable func(uint64) error) (uint64, error) {
	return m.InstallShardSnapshot(shard, next, durable)
}
