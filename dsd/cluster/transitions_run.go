package cluster

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/stratamq/strata/dsd/meta"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// Running the replica transitions (docs/replication.md). Each shard's
// first pending transition is carried out by the sites that can:
//
//   - add S: S claims it and starts its member of the shard's group with
//     an empty log (manageShards); the group's leader adds S as a learner
//     (a conf change), S catches up (by a snapshot, or the log from its
//     first entry), the leader promotes it to voter once it replicates
//     within KeepEntries of the commit index, and completes the transition (S joins the replica set). A
//     shard with one replica and no group starts one first (groupPromote).
//   - del S: the group's leader claims it, hands leadership to another
//     voter if S is itself, removes S (a conf change) and completes the
//     transition; S, no longer in the replica set, stops its member and
//     deletes its raft state and the shard's data (manageShards).
//
// Every step is read from the metadata and the group's applied conf state
// each time the runner looks (every few ticks), so a restart resumes where
// it stood: a claimed add restarts its member (Claimed), and a leader
// elected meanwhile takes over the steps of its predecessor.

// transitionEvery is how many raft ticks apart the runner looks.
const transitionEvery = 5

// runTransitions carries out, until Close, the steps of the pending
// transitions that fall to this site.
// While none is pending it sleeps until the metadata changes.
func (c *Cluster) runTransitions() {
	t := time.NewTicker(transitionEvery * c.opts.TickInterval)
	defer t.Stop()
	for {
		pending := c.holdTransitions.Load()
		for _, sp := range c.State().GetMessages().GetShards() {
			if int(sp.GetShard()) >= c.opts.Shards.NShards() || c.holdTransitions.Load() {
				continue
			}
			if ts := sp.GetTransitions(); len(ts) > 0 {
				pending = true
				c.stepTransition(sp.GetShard(), ts[0])
			}
			if c.removeStrayLearners(sp) {
				pending = true
			}
		}
		tick := t.C
		if !pending {
			tick = nil
		}
		select {
		case <-c.ctx.Done():
			return
		case <-tick:
		case <-c.transitionsWake:
		}
	}
}

// TransitionsInFlight counts the claimed transitions not yet completed.
func (c *Cluster) TransitionsInFlight() int {
	n := 0
	for _, sp := range c.State().GetMessages().GetShards() {
		if ts := sp.GetTransitions(); len(ts) > 0 && ts[0].GetClaimedBy() != "" {
			n++
		}
	}
	return n
}

func (c *Cluster) stepTransition(shard uint32, t *clusterv1.Transition) {
	g := c.shardGroup(ShardGroup(int(shard)))
	leads := g != nil && g.leader.Load()
	switch t.GetOp() {
	case clusterv1.TransitionOp_TRANSITION_OP_ADD:
		if t.GetSite() == c.opts.Site && t.GetClaimedBy() == "" {
			c.claim(shard, t)
			return
		}
		if leads && t.GetClaimedBy() == t.GetSite() {
			g.stepAdd(t)
		}
	case clusterv1.TransitionOp_TRANSITION_OP_DEL:
		if !leads {
			return
		}
		if t.GetClaimedBy() == "" {
			c.claim(shard, t)
			return
		}
		// A claim by a former leader: only the leader can change the
		// group, and it goes on where its predecessor stood.
		g.stepDel(t)
	}
}

// removeStrayLearners removes, on the shard group's leader, the learners
// that are neither replicas nor the site of the shard's next addition: an
// addition dropped by a new set-replicas after its learner was added. It
// reports whether it found any.
func (c *Cluster) removeStrayLearners(sp *clusterv1.ShardPlacement) bool {
	g := c.shardGroup(ShardGroup(int(sp.GetShard())))
	if g == nil || !g.leader.Load() {
		return false
	}
	n := g.node.Load()
	if n == nil {
		return false
	}
	c.mu.Lock()
	caughtUp := c.mu.applied >= c.startCommit
	c.mu.Unlock()
	if !caughtUp {
		return false
	}
	allowed := map[string]bool{}
	for _, r := range sp.GetReplicas() {
		allowed[r] = true
	}
	if ts := sp.GetTransitions(); len(ts) > 0 && ts[0].GetOp() == clusterv1.TransitionOp_TRANSITION_OP_ADD {
		allowed[ts[0].GetSite()] = true
	}
	st := n.Status()
	found := false
	for id := range st.Config.Learners {
		if !allowed[meta.SiteID(id)] {
			found = true
			g.proposeConfChange(n, pb.ConfChangeRemoveNode, id, "remove a learner no transition adds")
		}
	}
	return found
}

func (c *Cluster) claim(shard uint32, t *clusterv1.Transition) {
	if err := c.Claim(c.ctx, shard, t); err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("replica transition not claimed yet", "shard", shard, "transition", meta.TransitionString(t), "err", err)
		}
		return
	}
	c.log.Info("replica transition claimed", "shard", shard, "transition", meta.TransitionString(t))
}

func (c *Cluster) complete(shard uint32, t *clusterv1.Transition) {
	if err := c.Complete(c.ctx, shard, t); err != nil {
		if c.ctx.Err() == nil && !errors.Is(err, meta.ErrNotNext) {
			c.log.Warn("replica transition not completed yet", "shard", shard, "transition", meta.TransitionString(t), "err", err)
		}
		return
	}
	c.log.Info("replica transition completed", "shard", shard, "transition", meta.TransitionString(t))
}

// stepAdd takes, on the leader, the next step of adding t's site: as a
// learner, then as a voter once it has caught up, then the transition's
// completion.
func (g *shardGroup) stepAdd(t *clusterv1.Transition) {
	id, err := meta.NodeID(t.GetSite())
	n := g.node.Load()
	if err != nil || n == nil {
		return
	}
	st := n.Status()
	switch {
	case isVoter(st, id):
		g.c.complete(uint32(g.shard), t)
	case isLearner(st, id):
		// Caught up: replicating, within KeepEntries of the commit index
		// (under load it may never be level with it).
		if pr, ok := st.Progress[id]; ok && pr.State == tracker.StateReplicate && pr.Match+g.c.opts.KeepEntries >= st.GetCommit() {
			g.proposeConfChange(n, pb.ConfChangeAddNode, id, "promote the learner to voter")
		}
	default:
		g.proposeConfChange(n, pb.ConfChangeAddLearnerNode, id, "add a learner")
	}
}

// stepDel takes, on the leader, the next step of removing t's site:
// leadership handed over first if it is this site, then the conf change,
// then the transition's completion.
func (g *shardGroup) stepDel(t *clusterv1.Transition) {
	id, err := meta.NodeID(t.GetSite())
	n := g.node.Load()
	if err != nil || n == nil {
		return
	}
	st := n.Status()
	switch {
	case id == g.c.self:
		// The leader leaves: the most advanced other voter takes over.
		var to, match uint64
		for v := range st.Config.Voters.IDs() {
			if pr, ok := st.Progress[v]; ok && v != id && (to == 0 || pr.Match > match) {
				to, match = v, pr.Match
			}
		}
		if to != 0 {
			g.c.log.Info("shard group hands leadership over: this site's replica is to be removed", "shard", g.shard, "to", meta.SiteID(to))
			g.transferLeadership(n, to)
		}
	case isVoter(st, id) || isLearner(st, id):
		g.proposeConfChange(n, pb.ConfChangeRemoveNode, id, "remove the replica")
	default:
		g.c.complete(uint32(g.shard), t)
	}
}

func (g *shardGroup) proposeConfChange(n raft.Node, typ pb.ConfChangeType, id uint64, what string) {
	ctx, cancel := context.WithTimeout(g.ctx, g.electionTimeout())
	defer cancel()
	cc := &pb.ConfChange{Type: &typ, NodeId: &id}
	if err := n.ProposeConfChange(ctx, cc); err != nil {
		g.c.log.Warn("shard group conf change not proposed", "shard", g.shard, "change", what, "site", meta.SiteID(id), "err", err)
		return
	}
	g.c.log.Info("shard group conf change proposed", "shard", g.shard, "change", what, "site", meta.SiteID(id))
}

func isVoter(st raft.Status, id uint64) bool {
	_, in := st.Config.Voters[0][id]
	_, out := st.Config.Voters[1][id]
	return in || out
}

func isLearner(st raft.Status, id uint64) bool {
	_, l := st.Config.Learners[id]
	_, ln := st.Config.LearnersNext[id]
	return l || ln
}
