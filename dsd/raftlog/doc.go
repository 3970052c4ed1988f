// Package raftlog keeps the raft state of many raft groups in the site's one
// Pebble instance: a raft.Storage (go.etcd.io/raft/v3) per group, written
// by the group's Ready loop. The metadata group uses it now; shard groups
// will share the same keyspace later, which is why every key carries the
// group id and nothing here is specific to one group.
//
// # Keys
//
// Every key starts with the site-wide prefix FF FF 30 (dsd/storage's
// keyspace table reserves it), then the 8-byte big-endian group id G:
//
//	FF FF 30 | G | 01              hard state      -> raftpb.HardState
//	FF FF 30 | G | 02              conf state      -> raftpb.ConfState (the last applied)
//	FF FF 30 | G | 03              snapshot        -> raftpb.Snapshot (the latest)
//	FF FF 30 | G | 04              truncated       -> index (8) | term (8)
//	FF FF 30 | G | 05 | index (8)  log entry       -> raftpb.Entry
//
// Every value is a format version byte (1) and then the protobuf encoding
// of the raftpb message named, or the two big-endian integers of the
// truncated record. Entries sort by index, so a group's log is one range.
//
// # Invariants
//
// The log holds the entries (truncated, last]; the truncated record names
// the index and term of the entry just before the first one, which is what
// raft asks Term for. Compact never passes the latest snapshot, so a
// follower that needs a compacted entry can always be sent the snapshot.
// Save writes a Ready's snapshot, entries and hard state in one synced
// batch, so they are durable before the Ready's messages are sent (the
// raft Ready contract); entries that conflict with appended ones are
// deleted in the same batch.
//
// # Concurrency
//
// raft reads a Storage from its own goroutine while the Ready loop writes
// it. The in-memory bounds sit under mu, which is never held across I/O.
// A Save that deletes entries (a snapshot, a conflicting tail) holds
// cutting for writing across its commit, and reads of entries hold it for
// reading, so a reader never pairs old bounds with deleted keys; Compact
// moves the bounds before it deletes, for the same reason.
package raftlog
