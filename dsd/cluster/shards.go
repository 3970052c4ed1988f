package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/meta"
	"github.com/stratamq/strata/dsd/raftlog"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// ShardGroup is the raft group id of a shard: 1 + shard.
func ShardGroup(shard int) uint64 { return 1 + uint64(shard) }

// ErrNotLeader: this site may not serve a replicated shard's writes or
// reads (NotLeaderError says why, and where to go).
var ErrNotLeader = errors.New("cluster: not the shard's leader")

// NotLeaderError is why this site refuses a replicated shard's call: it
// follows (Leader and Address name the leader when one is known), holds no
// replica (Replicas lists them), or its shard group is not running yet.
type NotLeaderError struct {
	Shard int
	// Leader is the leader's site id and Address its gRPC address ("":
	// unknown).
	Leader, Address string
	// Replicas are the shard's replica addresses when this site holds
	// none.
	Replicas []string
	// Starting: the shard's role here is not known yet (the allocation
	// or the shard group is not up).
	Starting bool
	// Unconfirmed, when set, is the read lease: this site leads, but a
	// majority of the replicas has not acknowledged it within it (a read
	// is refused: it may have been deposed).
	Unconfirmed time.Duration
}

func (e *NotLeaderError) Error() string {
	switch {
	case e.Unconfirmed > 0:
		return fmt.Sprintf("cluster: this site leads shard %d but a majority of its replicas has not acknowledged it within the last %v: it may have been deposed; retry", e.Shard, e.Unconfirmed)
	case e.Starting:
		return fmt.Sprintf("cluster: shard %d is replicated and its raft group is not running here yet; retry", e.Shard)
	case len(e.Replicas) > 0:
		return fmt.Sprintf("cluster: this site holds no replica of shard %d; its replicas are at %s", e.Shard, strings.Join(e.Replicas, ","))
	case e.Leader == "":
		return fmt.Sprintf("cluster: this site does not lead shard %d, and no leader is known yet; retry", e.Shard)
	}
	return fmt.Sprintf("cluster: this site does not lead shard %d; its leader is site %s at %s", e.Shard, e.Leader, e.Address)
}

// Is makes a NotLeaderError ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// ShardReplica is a replicated shard as the storage sees it
// (storage.Replicator).
type ShardReplica interface {
	Propose(data []byte) error
	CanServe() error
	CanRead() error
}

// ShardMachine is the site's storage as the shard groups drive it
// (dsd/server adapts storage.DB).
type ShardMachine interface {
	// NShards is the number of shards.
	NShards() int
	// Attach routes the shard's commands through r (nil: applied locally).
	Attach(shard int, r ShardReplica) error
	// ApplyReplicated applies a committed entry, in log order.
	ApplyReplicated(shard int, index uint64, data []byte) error
	// ReplicatedApplied is the last applied entry's index (durable).
	ReplicatedApplied(shard int) (uint64, error)
	// SyncReplicatedApplied makes every applied entry durable (an fsync)
	// and returns the last one's index.
	SyncReplicatedApplied(shard int) (uint64, error)
	// LeaderLost fails the shard's proposals not yet applied.
	LeaderLost(shard int)
	// OpenSnapshot opens a consistent view of the shard's state
	// (snapshots.go).
	OpenSnapshot(shard int) (ShardSnapshot, error)
	// InstallSnapshot replaces the shard's state with the chunks next
	// returns (then io.EOF), crash-safe; durable is called once the new
	// state is durable, before the install is marked complete. It returns
	// the applied index the state covers.
	InstallSnapshot(shard int, next func() ([]byte, error), durable func(applied uint64) error) (uint64, error)
	// InstallInterrupted reports whether a crash interrupted an install:
	// the shard was reset, and its group must fetch the state again.
	InstallInterrupted(shard int) (bool, error)
	// ResetShard replaces the shard's state with a new shard's records
	// (a replica removed from this site, or one about to be added).
	ResetShard(shard int) error
	// MarkReplicated records index as the shard's applied raft index: a
	// local shard becomes its new group's first snapshot.
	MarkReplicated(shard int, index uint64) error
}

// A shard group's log truncation is an entry of its own, which only the
// group reads (the storage never sees it): truncateMarker, then the index
// (8 bytes, big-endian) up to which every replica may drop its log. The
// storage's entries start with their version byte (1), never with it.
const truncateMarker byte = 0xC1

// shardMaxMsgBytes bounds the entries of one raft message of a shard
// group, well under dsd's gRPC receive limit (one larger entry goes
// alone).
const shardMaxMsgBytes = 256 << 10

// refusal is the Replicator of a shard this site does not serve.
type refusal struct{ err error }

func (r refusal) Propose([]byte) error { return r.err }
func (r refusal) CanServe() error      { return r.err }
func (r refusal) CanRead() error       { return r.err }

// replicatedConfig reports whether this site's configuration asks for
// replicated shards (n_sites and replication_factor both above 1).
func (c *Cluster) replicatedConfig() bool {
	return c.opts.NSites > 1 && c.opts.ReplicationFactor > 1
}

// startShards runs, with a ShardMachine, the shard manager: until the
// allocation says which shards are replicated, a site configured for
// replication, or joining a cluster (whose allocation it does not know
// yet), refuses every shard.
func (c *Cluster) startShards(joining bool) {
	sm := c.opts.Shards
	if sm == nil {
		return
	}
	if c.replicatedConfig() || c.anyReplicated() || joining {
		for i := range sm.NShards() {
			_ = sm.Attach(i, refusal{err: &NotLeaderError{Shard: i, Starting: true}})
		}
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.manageShards()
	}()
	go func() {
		defer c.wg.Done()
		c.runTransitions()
	}()
}

func (c *Cluster) anyReplicated() bool {
	for _, p := range c.State().GetMessages().GetShards() {
		if len(p.GetReplicas()) > 1 {
			return true
		}
	}
	return false
}

// metaApplied wakes the shard manager and the transitions' runner.
func (c *Cluster) metaApplied() {
	select {
	case c.metaChanged <- struct{}{}:
	default:
	}
	select {
	case c.transitionsWake <- struct{}{}:
	default:
	}
}

// manageShards starts a raft group for every replicated shard this site
// holds or is being added to, as soon as the metadata says so, refuses the
// replicated shards it does not hold, and stops and deletes the replica of
// a shard its group removed from this site (the transitions,
// transitions_run.go).
func (c *Cluster) manageShards() {
	sm := c.opts.Shards
	attached := map[int]string{}
	// Every change of the state is an applied entry or snapshot, which
	// wakes the manager (metaApplied): it need not poll.
	for {
		st := c.State()
		c.mu.Lock()
		caughtUp := c.mu.applied >= c.startCommit
		c.mu.Unlock()
		for _, p := range st.GetMessages().GetShards() {
			shard := int(p.GetShard())
			if shard >= sm.NShards() || !caughtUp {
				continue
			}
			reps := p.GetReplicas()
			in := slices.Contains(reps, c.opts.Site)
			var first *clusterv1.Transition
			if ts := p.GetTransitions(); len(ts) > 0 {
				first = ts[0]
			}
			adding := first.GetOp() == clusterv1.TransitionOp_TRANSITION_OP_ADD
			running := attached[shard] == "group"
			switch {
			case in && len(reps) > 1, adding && first.GetSite() == c.opts.Site && first.GetClaimedBy() == c.opts.Site:
				if !running {
					mode := groupBootstrap
					if !in {
						mode = groupJoin
					}
					c.startShardGroup(shard, reps, mode)
					attached[shard] = "group"
				}
			case in && (running || adding || (attached[shard] == "" && c.hasGroupState(shard))):
				// The only replica, with a group (its state the group's
				// first snapshot) once another is to be added. Raft state
				// of a group not running is looked for once (a previous
				// run's): only a group started here writes it, and a
				// removed one's is deleted.
				if !running {
					c.startShardGroup(shard, reps, groupPromote)
					attached[shard] = "group"
				}
			case in:
				if attached[shard] != "local" {
					_ = sm.Attach(shard, nil)
					attached[shard] = "local"
				}
			default:
				// A replica removed from this site (while it ran here, or
				// while this site was down) goes with its raft state.
				if running || (attached[shard] == "" && c.hasGroupState(shard)) {
					c.removeShardGroup(shard)
				}
				if attached[shard] != "none" {
					var addrs []string
					for _, r := range reps {
						addrs = append(addrs, c.Site(r).GetAddress())
					}
					_ = sm.Attach(shard, refusal{err: &NotLeaderError{Shard: shard, Replicas: addrs}})
					attached[shard] = "none"
				}
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.metaChanged:
		}
	}
}

// hasGroupState reports whether this site has raft state of shard's group
// (its group ran here).
func (c *Cluster) hasGroupState(shard int) bool {
	store, err := raftlog.Open(c.engine, ShardGroup(shard))
	if err != nil {
		return false
	}
	hs, _, _ := store.InitialState()
	last, _ := store.LastIndex()
	return !raft.IsEmptyHardState(hs) || last > 0
}

// removeShardGroup stops this site's member of shard's group, which
// removed it, and deletes its raft state and the shard's data.
func (c *Cluster) removeShardGroup(shard int) {
	if g := c.shardGroup(ShardGroup(shard)); g != nil {
		g.stop()
		c.shardsMu.Lock()
		delete(c.shardGroups, g.group)
		c.shardsMu.Unlock()
	}
	store, err := raftlog.Open(c.engine, ShardGroup(shard))
	if err == nil {
		err = store.Destroy()
	}
	if err != nil {
		c.log.Error("the raft state of a removed replica was not deleted", "shard", shard, "err", err)
	}
	if err := c.opts.Shards.ResetShard(shard); err != nil {
		c.log.Error("the data of a removed replica was not deleted", "shard", shard, "err", err)
		return
	}
	c.log.Info("replica removed from this site: its group stopped, its raft state and data deleted", "shard", shard)
}

// groupMode is how a shard group starts when this site has no raft state
// of it yet.
type groupMode int

const (
	// groupBootstrap: the allocation's replica set bootstraps the group,
	// each replica with the same voters.
	groupBootstrap groupMode = iota
	// groupJoin: a replica being added (a transition) starts with an
	// empty log and learns the group from its leader (as a learner).
	groupJoin
	// groupPromote: the shard's only replica, local so far, starts a
	// group of one voter whose first snapshot is the shard's state.
	groupPromote
)

// promotedIndex is the index of a promoted group's first snapshot.
const promotedIndex = 1

// shardGroup is this site's member of one shard's raft group.
type shardGroup struct {
	c     *Cluster
	shard int
	group uint64
	store *raftlog.Storage
	// peers are the replica sites at the group's bootstrap.
	peers []string
	node  atomic.Pointer[nodeRef]

	lead                  atomic.Uint64
	leader                atomic.Bool
	term, commit, applied atomic.Uint64
	failed                atomic.Bool
	// mode is how the group starts without raft state here.
	mode groupMode
	// ctx ends the group (Close, or the replica removed from this site);
	// done is closed once its goroutine ended.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// voters are the voters the group bootstraps with (groupBootstrap).
	voters []uint64
	// acks holds, per voter, the last acknowledgement of this site's
	// leadership (a MsgAppResp or MsgHeartbeatResp of its term): whether
	// the preferred replica is in touch (leaders.go); confirmed the latest
	// confirmation of its leadership by a quorum: the read lease (CanRead).
	acksMu    sync.Mutex
	acks      map[uint64]leaderAck
	confirmed leaseConfirmation
	// truncated is the index up to which this replica dropped its log;
	// proposedTruncate the last truncation the leader proposed;
	// installedThrough the applied index of the storage's state after a
	// snapshot's install, which may pass the snapshot's index: the
	// committed entries up to it are not applied again (all three owned
	// by the ready loop).
	truncated, proposedTruncate, installedThrough uint64
	// ledSince is when this site's current leadership began, and
	// balanceTried when it last tried to hand it to the preferred replica
	// (both owned by the ready loop).
	ledSince, balanceTried time.Time
	// noReadsTerm and noReadsUntil (unix ns) stop reads after this site
	// started a leadership transfer in that term (leaders.go).
	noReadsTerm  atomic.Uint64
	noReadsUntil atomic.Int64
	// snapshots are the snapshots this site sent as the leader
	// (snapshots.go); snapshotsSent and snapshotsInstalled count them.
	snapshots                         snapshotTracker
	snapshotsSent, snapshotsInstalled atomic.Uint64
}

// leaseConfirmation is when a confirmation of this site's leadership in
// term, which a quorum answered, was asked (confirmLeadership).
type leaseConfirmation struct {
	term  uint64
	asked time.Time
}

// leaderAck is when a voter last acknowledged this site as the leader of
// term.
type leaderAck struct {
	term uint64
	at   time.Time
}

// startShardGroup starts this site's member of shard's group, routing the
// shard's commands through it. Without raft state here it starts as mode
// says (peers: the replica set); a restart resumes from the log.
func (c *Cluster) startShardGroup(shard int, peers []string, mode groupMode) *shardGroup {
	g := &shardGroup{c: c, shard: shard, group: ShardGroup(shard), peers: slices.Clone(peers), acks: map[uint64]leaderAck{},
		mode: mode, done: make(chan struct{}), snapshots: snapshotTracker{sent: map[uint64]time.Time{}, serving: map[uint64]int{}}}
	g.ctx, g.cancel = context.WithCancel(c.ctx)
	if mode != groupJoin {
		for _, p := range peers {
			if id, err := meta.NodeID(p); err == nil {
				g.voters = append(g.voters, id)
			}
		}
	}
	c.shardsMu.Lock()
	c.shardGroups[g.group] = g
	c.shardsMu.Unlock()
	// The shard takes no local command once the group is attached: a
	// promoted shard's state is then final until the group's entries.
	_ = c.opts.Shards.Attach(shard, g)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(g.done)
		if err := g.run(); err != nil {
			g.failed.Store(true)
			c.log.Error("shard group stops: its raft state cannot be persisted or applied", "shard", shard, "err", err)
		}
	}()
	return g
}

// stop ends the group and waits for its goroutine.
func (g *shardGroup) stop() {
	g.cancel()
	<-g.done
}

// sleep waits d, false when the group ends first.
func (g *shardGroup) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-g.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Cluster) shardGroup(group uint64) *shardGroup {
	c.shardsMu.Lock()
	defer c.shardsMu.Unlock()
	return c.shardGroups[group]
}

func (g *shardGroup) run() error {
	c, sm := g.c, g.c.opts.Shards
	store, err := raftlog.Open(c.engine, g.group)
	if err != nil {
		return err
	}
	g.store = store
	if err := g.initialize(store); err != nil {
		return err
	}
	hs, cs, err := store.InitialState()
	if err != nil {
		return err
	}
	interrupted, err := sm.InstallInterrupted(g.shard)
	if err != nil {
		return err
	}
	if interrupted {
		// The shard was reset: before raft runs, it takes the state of
		// another replica that covers at least this replica's commit
		// index; the log stays as it is.
		if err := g.refetch(cs, hs.GetCommit()); err != nil || g.ctx.Err() != nil {
			return err
		}
	}
	applied, err := sm.ReplicatedApplied(g.shard)
	if err != nil {
		return err
	}
	// A state installed from a snapshot may cover entries past the
	// snapshot's index that the log has yet to commit here: raft starts
	// at the commit index and the entries up to the state's are skipped.
	g.installedThrough = applied
	applied = min(applied, hs.GetCommit())
	snap, err := store.Snapshot()
	if err != nil {
		return err
	}
	g.truncated = snap.GetMetadata().GetIndex()
	last, err := store.LastIndex()
	if err != nil {
		return err
	}
	cfg := &raft.Config{
		ID: c.self, ElectionTick: c.opts.ElectionTicks, HeartbeatTick: c.opts.HeartbeatTicks,
		Storage: store, Applied: applied, MaxSizePerMsg: shardMaxMsgBytes, MaxInflightMsgs: 256,
		CheckQuorum: true, PreVote: true, DisableProposalForwarding: true, StepDownOnRemoval: true,
		Logger: raftLogger{l: c.log.With("raft_group", g.group)},
	}
	var node raft.Node
	first := false
	if raft.IsEmptyHardState(hs) && last == 0 && g.mode == groupBootstrap {
		if len(g.voters) != len(g.peers) {
			return fmt.Errorf("cluster: shard %d: a replica of %v is not a site id", g.shard, g.peers)
		}
		peers := make([]raft.Peer, len(g.voters))
		for i, id := range g.voters {
			peers[i] = raft.Peer{ID: id}
		}
		node = raft.StartNode(cfg, peers)
		// The shard's preferred leader campaigns at once rather than
		// after an election timeout (leaders.go).
		first = c.preferredLeader(g.shard) == c.opts.Site
		c.log.Info("shard group bootstrapped", "shard", g.shard, "replicas", g.peers)
	} else {
		node = raft.RestartNode(cfg)
		if raft.IsEmptyHardState(hs) && last == 0 {
			c.log.Info("shard group starts empty: this replica is being added; the leader sends it the group", "shard", g.shard)
		} else {
			c.log.Info("shard group restarted", "shard", g.shard, "applied", applied, "last_index", last, "voters", len(cs.GetVoters()))
		}
		// A group of one voter elects it at once.
		first = len(cs.GetVoters()) == 1 && cs.GetVoters()[0] == c.self
	}
	g.node.Store(&nodeRef{node})
	defer func() {
		g.node.Store(nil)
		g.leader.Store(false)
		node.Stop()
		sm.LeaderLost(g.shard)
	}()
	return g.readyLoop(node, first)
}

func (g *shardGroup) readyLoop(node raft.Node, campaign bool) error {
	c := g.c
	ticker := time.NewTicker(c.opts.TickInterval)
	defer ticker.Stop()
	// ledTerm is the term this site leads in (0: it does not lead).
	var ledTerm uint64
	ticks := 0
	for {
		select {
		case <-g.ctx.Done():
			return nil
		case <-ticker.C:
			node.Tick()
			g.maybeProposeTruncate(node)
			if g.leader.Load() {
				g.expireSnapshots(node)
				g.confirmLeadership(node)
			}
			if ticks++; ticks%balanceEvery == 0 {
				g.maybeBalance(node)
			}
		case rd := <-node.Ready():
			if ss := rd.SoftState; ss != nil {
				g.softState(ss)
			}
			if !raft.IsEmptyHardState(rd.HardState) {
				g.term.Store(rd.HardState.GetTerm())
			}
			for _, rs := range rd.ReadStates {
				g.leaseConfirmed(rs.RequestCtx)
			}
			if err := g.handleReady(node, rd); err != nil {
				return err
			}
			// Proposals of a leadership that ended (stepped down, or
			// leads again in a later term: one Ready may hide the step
			// down) may never be committed: their callers learn it now
			// (after this Ready's committed entries went to the storage).
			term, leads := g.term.Load(), g.leader.Load()
			if ledTerm != 0 && (!leads || term != ledTerm) {
				c.opts.Shards.LeaderLost(g.shard)
			}
			if leads && term != ledTerm {
				g.ledSince = time.Now()
			}
			ledTerm = 0
			if leads {
				ledTerm = term
			}
			node.Advance()
			if campaign {
				campaign = false
				_ = node.Campaign(g.ctx)
			}
		}
	}
}

func (g *shardGroup) softState(ss *raft.SoftState) {
	isLeader := ss.RaftState == raft.StateLeader
	if prev := g.lead.Swap(ss.Lead); prev != ss.Lead {
		if ss.Lead == raft.None {
			g.c.log.Info("shard group has no leader", "shard", g.shard)
		} else {
			g.c.log.Info("shard group leader", "shard", g.shard, "leader", meta.SiteID(ss.Lead), "this_site", isLeader)
		}
	}
	g.leader.Store(isLeader)
}

// handleReady persists, sends and applies one Ready, in raft's order.
func (g *shardGroup) handleReady(node raft.Node, rd raft.Ready) error {
	if !raft.IsEmptyHardState(rd.HardState) {
		g.commit.Store(rd.HardState.GetCommit())
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		// The shard's state, fetched from the leader and installed; the
		// Ready is saved before the install is marked complete.
		if err := g.installSnapshot(rd); err != nil {
			return err
		}
		if g.ctx.Err() != nil {
			return nil
		}
		g.applied.Store(rd.Snapshot.GetMetadata().GetIndex())
	} else if err := g.store.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		return err
	}
	tr := g.c.transport()
	for _, m := range rd.Messages {
		sent := tr.Send(meta.SiteID(m.GetTo()), g.group, m)
		if !sent {
			node.ReportUnreachable(m.GetTo())
		}
		if m.GetType() == pb.MsgSnap {
			g.snapMessage(node, m, sent)
		}
	}
	sm := g.c.opts.Shards
	for _, e := range rd.CommittedEntries {
		switch e.GetType() {
		case pb.EntryNormal:
			if d := e.GetData(); len(d) == 9 && d[0] == truncateMarker {
				if err := g.truncate(binary.BigEndian.Uint64(d[1:])); err != nil {
					return err
				}
			} else if len(d) > 0 && e.GetIndex() > g.installedThrough {
				if err := sm.ApplyReplicated(g.shard, e.GetIndex(), d); err != nil {
					return err
				}
			}
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			var cc interface {
				proto.Message
				pb.ConfChangeI
			} = &pb.ConfChangeV2{}
			if e.GetType() == pb.EntryConfChange {
				cc = &pb.ConfChange{}
			}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return fmt.Errorf("cluster: shard %d conf change %d: %w", g.shard, e.GetIndex(), err)
			}
			cs := node.ApplyConfChange(cc)
			if err := g.store.SetConfState(cs); err != nil {
				return err
			}
			for _, ch := range cc.AsV2().GetChanges() {
				if ch.GetType() == pb.ConfChangeAddLearnerNode {
					// The learner catches up by the latest snapshot,
					// which must name it.
					if err := g.store.AddSnapshotLearner(ch.GetNodeId()); err != nil {
						return err
					}
				}
			}
			g.c.log.Info("shard group membership changed", "shard", g.shard, "voters", len(cs.GetVoters()), "learners", len(cs.GetLearners()))
			g.c.metaApplied() // the transitions' runner looks at the group's members
		}
		g.applied.Store(e.GetIndex())
	}
	return nil
}

// maybeProposeTruncate proposes, on the leader, a truncation of the log
// every SnapshotEntries entries: up to KeepEntries before the lowest index
// every replica in touch with the leader has (raft's Match), so a replica
// that is merely slow catches up from the log; a replica from which this
// site has heard nothing for DownAfter (once it has led that long) does not
// hold truncation back, and catches up by a snapshot when it returns
// (snapshots.go). Each replica then drops
// its log up to that index or its own durable applied index, whichever is
// lower (truncate).
func (g *shardGroup) maybeProposeTruncate(node raft.Node) {
	if !g.leader.Load() || g.applied.Load() < g.proposedTruncate+g.c.opts.SnapshotEntries+g.c.opts.KeepEntries {
		return
	}
	st := node.Status()
	lowest := st.GetCommit()
	now, down := time.Now(), g.c.opts.DownAfter
	for id, pr := range st.Progress {
		if id != g.c.self && now.Sub(g.ledSince) >= down && now.Sub(g.c.lastHeard(meta.SiteID(id))) >= down {
			continue // down: it catches up by a snapshot
		}
		lowest = min(lowest, pr.Match)
	}
	if lowest <= g.c.opts.KeepEntries {
		return
	}
	to := lowest - g.c.opts.KeepEntries
	if to < g.proposedTruncate+g.c.opts.SnapshotEntries {
		return
	}
	ctx, cancel := context.WithTimeout(g.c.ctx, g.electionTimeout())
	defer cancel()
	if node.Propose(ctx, binary.BigEndian.AppendUint64([]byte{truncateMarker}, to)) == nil {
		g.proposedTruncate = to
	}
}

// truncate drops this replica's log up to index to, or up to its durable
// applied index when that is lower (a restart re-applies the entries after
// it from the log), recording the truncation as a snapshot without data
// (raftlog compacts only up to a snapshot): sent to a replica, it fetches
// the state from this site (snapshots.go).
func (g *shardGroup) truncate(to uint64) error {
	applied, err := g.c.opts.Shards.SyncReplicatedApplied(g.shard)
	if err != nil {
		return err
	}
	to = min(to, applied)
	if to <= g.truncated {
		return nil
	}
	_, cs, err := g.store.InitialState()
	if err != nil {
		return err
	}
	if _, err := g.store.CreateSnapshot(to, cs, snapshotData); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		return err
	}
	if err := g.store.Compact(to); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return err
	}
	g.truncated = to
	return nil
}

// Propose proposes one entry of the shard's commands; only the leader
// proposes (followers do not forward).
func (g *shardGroup) Propose(data []byte) error {
	if err := g.CanServe(); err != nil {
		return err
	}
	if len(data) > g.c.opts.MaxEntryBytes {
		return fmt.Errorf("%w: shard %d entry of %d bytes (at most %d)", ErrEntryTooLarge, g.shard, len(data), g.c.opts.MaxEntryBytes)
	}
	n := g.node.Load()
	if n == nil {
		return g.notLeader()
	}
	ctx, cancel := context.WithTimeout(g.c.ctx, g.electionTimeout())
	defer cancel()
	if err := n.Propose(ctx, data); err != nil {
		if errors.Is(err, raft.ErrProposalDropped) || errors.Is(err, context.DeadlineExceeded) {
			return g.notLeader()
		}
		if errors.Is(err, raft.ErrStopped) || g.c.ctx.Err() != nil {
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// readLease is how long a quorum's confirmation of this site's
// leadership lets it serve reads, counted from when the confirmation was
// asked, before its heartbeat was sent: half an election timeout. A voter
// that received that heartbeat grants no vote (CheckQuorum's lease) until
// it has counted an election timeout of ticks, which takes at least an
// election timeout less a tick after the heartbeat was sent (a ticker is
// never early; its first tick may come at once), so while the lease holds
// no other leader can have been elected: whatever the delays of the
// heartbeat and of its acknowledgements, and with half an election timeout
// less a tick to spare for the voters' tick processing (a forced campaign,
// a leadership transfer, is fenced apart: leaders.go). A confirmation is
// asked every tick (confirmLeadership), so a leader whose round trips to a
// quorum take less than half an election timeout less a tick is always
// within it.
func (g *shardGroup) readLease() time.Duration {
	return g.electionTimeout() / 2
}

// electionTimeout is raft's election timeout: also how long a proposal may
// wait to enter the group.
func (g *shardGroup) electionTimeout() time.Duration {
	return g.c.electionTimeout()
}

// acked records a message of a voter that acknowledges this site as the
// leader of the current term (whether the voter is in touch: leaders.go).
func (g *shardGroup) acked(m *pb.Message) {
	switch m.GetType() {
	case pb.MsgAppResp, pb.MsgHeartbeatResp:
	default:
		return
	}
	if !g.leader.Load() || m.GetTerm() != g.term.Load() {
		return
	}
	g.acksMu.Lock()
	g.acks[m.GetFrom()] = leaderAck{term: m.GetTerm(), at: time.Now()}
	g.acksMu.Unlock()
}

// confirmLeadership asks raft, on the leader, to confirm its leadership
// with a quorum: a read index request whose context is the term and the
// time it was asked; raft answers it (a ReadState) once a quorum has
// acknowledged a heartbeat sent after it (leaseConfirmed).
func (g *shardGroup) confirmLeadership(node raft.Node) {
	rctx := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), g.term.Load()), uint64(time.Now().UnixNano()))
	_ = node.ReadIndex(g.ctx, rctx)
}

// leaseConfirmed records a ReadState of confirmLeadership: while this site
// still leads in the term it was asked in, the read lease runs from when
// it was asked. Owned by the ready loop, after the Ready's soft and hard
// state are recorded (a request forwarded to another leader after this
// site lost its leadership is answered in a later term).
func (g *shardGroup) leaseConfirmed(rctx []byte) {
	if len(rctx) != 16 {
		return
	}
	term, asked := binary.BigEndian.Uint64(rctx), time.Unix(0, int64(binary.BigEndian.Uint64(rctx[8:])))
	if !g.leader.Load() || term != g.term.Load() {
		return
	}
	g.acksMu.Lock()
	defer g.acksMu.Unlock()
	if c := g.confirmed; term > c.term || (term == c.term && asked.After(c.asked)) {
		g.confirmed = leaseConfirmation{term: term, asked: asked}
	}
}

// CanRead is nil while this site leads the shard's group and a quorum of
// its voters confirmed its leadership within the read lease, counted from
// when the confirmation was asked.
func (g *shardGroup) CanRead() error {
	if err := g.CanServe(); err != nil {
		return err
	}
	term, lease, now := g.term.Load(), g.readLease(), time.Now()
	if g.readsFenced(term, now) {
		// Handing leadership over: refused as an unconfirmed lease is.
		return &NotLeaderError{Shard: g.shard, Unconfirmed: lease}
	}
	g.acksMu.Lock()
	c := g.confirmed
	g.acksMu.Unlock()
	if c.term == term && now.Sub(c.asked) < lease {
		return nil
	}
	return &NotLeaderError{Shard: g.shard, Unconfirmed: lease}
}

// CanServe is nil while this site leads the shard's group.
func (g *shardGroup) CanServe() error {
	if g.failed.Load() {
		return ErrStopped
	}
	if !g.leader.Load() {
		return g.notLeader()
	}
	return nil
}

func (g *shardGroup) notLeader() error {
	e := &NotLeaderError{Shard: g.shard}
	if lead := g.lead.Load(); lead != raft.None && lead != g.c.self {
		e.Leader = meta.SiteID(lead)
		e.Address = g.c.Site(e.Leader).GetAddress()
	}
	return e
}

// ShardStatus is one shard group's raft status on this site.
type ShardStatus struct {
	Shard int
	// Leader is the leader's site id ("" unknown); IsLeader: this site.
	Leader                string
	IsLeader              bool
	Term, Commit, Applied uint64
	// FirstIndex is the first entry the log still holds (truncation).
	FirstIndex uint64
	Running    bool
	// SnapshotsSent and SnapshotsInstalled count the shard snapshots
	// this site streamed to a replica and installed since it started.
	SnapshotsSent, SnapshotsInstalled uint64
}

// ShardStatuses are the shard groups running on this site, by shard.
func (c *Cluster) ShardStatuses() []ShardStatus {
	c.shardsMu.Lock()
	groups := make([]*shardGroup, 0, len(c.shardGroups))
	for _, g := range c.shardGroups {
		groups = append(groups, g)
	}
	c.shardsMu.Unlock()
	slices.SortFunc(groups, func(a, b *shardGroup) int { return a.shard - b.shard })
	out := make([]ShardStatus, len(groups))
	for i, g := range groups {
		s := ShardStatus{Shard: g.shard, IsLeader: g.leader.Load(), Term: g.term.Load(), Commit: g.commit.Load(),
			Applied: g.applied.Load(), Running: g.node.Load() != nil && !g.failed.Load(),
			SnapshotsSent: g.snapshotsSent.Load(), SnapshotsInstalled: g.snapshotsInstalled.Load()}
		if s.Running {
			s.FirstIndex, _ = g.store.FirstIndex()
		}
		if lead := g.lead.Load(); lead != raft.None {
			s.Leader = meta.SiteID(lead)
		}
		out[i] = s
	}
	return out
}

// deliverShard hands a shard group's message to its member here; one for
// a group not running here (yet) is dropped: raft sends again.
func (c *Cluster) deliverShard(group uint64, m *pb.Message) {
	g := c.shardGroup(group)
	if g == nil {
		return
	}
	g.acked(m)
	if n := g.node.Load(); n != nil {
		_ = n.Step(c.ctx, m)
	}
}
