// Package cluster runs the metadata raft group of a site: every site of
// the cluster is a voter of one small raft group (group 0) whose state
// machine (dsd/meta) holds the sites, with address and liveness, and per
// shard its replica set, target set and pending transitions; and the
// shard groups beside it (shards.go), on the same log store (dsd/raftlog)
// and transport (dsd/sitelink): one raft group per replicated shard, group
// 1 + shard, whose entries the storage applies (ShardMachine). A replica
// that needs entries its group's log dropped fetches the shard's state
// from the leader (snapshots.go); the replica transitions are run by the
// sites concerned (transitions_run.go); each shard's leadership goes to
// its preferred replica, so that the sites share the shards' work
// (leaders.go). docs/replication.md is the design note.
//
// # Membership
//
// A site's raft node id is its site id read as a big-endian integer. The
// first site of a cluster (no --join, empty raft state) bootstraps the
// group with itself as the only voter. A site started with --join on an
// empty raft state calls SiteService.Join on that address, which proposes a
// raft conf change adding it (its Site record is the change's context)
// and answers once the change is applied; the new site then starts raft
// with no peers of its own and learns the log from the leader. A site with
// raft state restarts from it and ignores --join; it announces its address
// to the members again (Join of a member updates its record).
//
// # Ready loop
//
// One goroutine ticks raft and handles each Ready in the raft order:
// snapshot, entries and hard state saved in one synced batch, then the
// messages sent, then committed entries applied, then Advance. Applying a
// conf change records the new conf state (raftlog.SetConfState), so a
// restart starts with the membership it had. Every SnapshotEntries applied
// entries, and at every membership change, the state machine is
// snapshotted and the log compacted, keeping KeepEntries entries for slow
// followers; the snapshot at a membership change is what a site joining a
// compacted log is sent (raft refuses a snapshot whose conf state lacks
// the receiving site).
//
// # Leader duties
//
// Only the leader proposes what it observes: every LivenessInterval it
// compares each site's up/down with when a raft message of that site was
// last delivered here (down after DownAfter of silence, up again on the
// first message; raft heartbeats keep a live follower's fresh) and
// proposes SetSiteStatus on a change; and once n_sites sites are members and no
// shard is allocated, it proposes the first allocation (dsd/placement).
package cluster
