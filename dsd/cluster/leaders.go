package cluster

import (
	"slices"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/stratamq/strata/dsd/meta"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// Spreading the shards' leadership over their replicas. Raft elects
// whichever replica campaigns first, which on a fresh cluster is the same
// site for every shard (the allocation's replica sets are sorted), and
// after a crash the survivors keep what they took: one site would do all
// the work. So every replicated shard has a preferred leader
// (preferredLeaders), which campaigns at once when the group bootstraps;
// and a shard's leader hands leadership to it (raft's TransferLeadership)
// once it is a voter, caught up, and has been heard from without a break
// for LeaderBalanceAfter: a site back from a crash regains its shards, and
// a site that keeps failing does not (each transfer costs the shard's
// writes a short pause).

// maxTransferLag is how many entries the preferred replica may lack for
// the leader to start a transfer: raft sends it the rest before it hands
// over, and drops the shard's proposals meanwhile, so the lag bounds that
// pause.
const maxTransferLag = 64

// transferFence is how many election timeouts a leader refuses reads after
// it asked for a leadership transfer (transferLeadership).
const transferFence = 4

// balanceEvery is how many raft ticks apart a leader looks whether to
// hand its leadership to the preferred replica.
const balanceEvery = 10

// preferredLeaders returns the preferred leader of each shard of the
// allocation (by shard id; "" for a shard without replicas): deterministic
// (every site computes the same from the same metadata) and balanced. The
// shards are dealt in order, each to the replica that leads the fewest of
// the shards dealt so far, ties broken by the replica list rotated by the
// shard id: with every shard on the same sites (n_sites =
// replication_factor) the leaders go round-robin over them.
func preferredLeaders(shards []*clusterv1.ShardPlacement) map[uint32]string {
	sorted := slices.Clone(shards)
	slices.SortFunc(sorted, func(a, b *clusterv1.ShardPlacement) int { return int(a.GetShard()) - int(b.GetShard()) })
	out := make(map[uint32]string, len(shards))
	leads := map[string]int{}
	for _, p := range sorted {
		reps := slices.Clone(p.GetReplicas())
		slices.Sort(reps)
		if len(reps) == 0 {
			out[p.GetShard()] = ""
			continue
		}
		start := int(p.GetShard()) % len(reps)
		best := reps[start]
		for k := 1; k < len(reps); k++ {
			if r := reps[(start+k)%len(reps)]; leads[r] < leads[best] {
				best = r
			}
		}
		leads[best]++
		out[p.GetShard()] = best
	}
	return out
}

// preferredLeader is shard's preferred leader under the applied
// allocation ("": not allocated).
func (c *Cluster) preferredLeader(shard int) string {
	return preferredLeaders(c.State().GetMessages().GetShards())[uint32(shard)]
}

// maybeBalance hands, on the leader, the shard's leadership to its
// preferred replica when that one is a voter, within maxTransferLag of
// the leader's log, acknowledged this leadership within an election
// timeout, and has been heard from without a break for
// LeaderBalanceAfter; at most one attempt per LeaderBalanceAfter. Owned
// by the ready loop.
func (g *shardGroup) maybeBalance(node raft.Node) {
	hold := g.c.opts.LeaderBalanceAfter
	now := time.Now()
	if hold < 0 || !g.leader.Load() || now.Sub(g.balanceTried) < hold {
		return
	}
	var placement *clusterv1.ShardPlacement
	st := g.c.State().GetMessages().GetShards()
	for _, p := range st {
		if int(p.GetShard()) == g.shard {
			placement = p
		}
	}
	if placement == nil || len(placement.GetTransitions()) > 0 {
		return // the transitions move leadership as they need (stepDel)
	}
	to := preferredLeaders(st)[uint32(g.shard)]
	id, err := meta.NodeID(to)
	if err != nil || id == g.c.self {
		return
	}
	rs := node.Status()
	pr, ok := rs.Progress[id]
	self, selfOK := rs.Progress[g.c.self]
	// Match, not the progress state: a replica that was up to date when
	// it stopped is probed, and stays so until the next entry.
	if !ok || !selfOK || !isVoter(rs, id) || rs.LeadTransferee != raft.None || pr.Match+maxTransferLag < self.Match {
		return
	}
	// In touch both ways: it acknowledged this leadership within an
	// election timeout (not raft's RecentActive, which each quorum check
	// clears; and a site that can send but not receive has no
	// acknowledgement to send).
	g.acksMu.Lock()
	a, acked := g.acks[id]
	g.acksMu.Unlock()
	if !acked || a.term != g.term.Load() || now.Sub(a.at) >= g.electionTimeout() {
		return
	}
	if since := g.c.heardSince(to); since.IsZero() || now.Sub(since) < hold {
		return
	}
	g.balanceTried = now
	g.c.log.Info("shard group hands leadership to its preferred replica", "shard", g.shard, "to", to, "match", pr.Match, "last_index", self.Match)
	g.transferLeadership(node, id)
}

// transferLeadership asks raft to hand this site's leadership to voter
// to. Reads stop here first: the transferee campaigns without waiting for
// an election timeout, and the voters grant it their vote although they
// confirmed this site's leadership moments ago (a forced campaign ignores
// CheckQuorum's lease), so the read lease no longer holds. They stay
// refused for transferFence election timeouts of this term: raft sends the
// transferee its go (MsgTimeoutNow) within one election timeout or aborts
// the transfer, and a confirmation asked before the voters vote expires
// half of one after it was asked; so the fence holds while that message
// and the transferee's vote requests take under two and a half election
// timeouts. A transfer that succeeds ends this leadership at once; the
// fence costs reads only after one that failed.
func (g *shardGroup) transferLeadership(node raft.Node, to uint64) {
	g.noReadsTerm.Store(g.term.Load())
	g.noReadsUntil.Store(time.Now().Add(transferFence * g.electionTimeout()).UnixNano())
	node.TransferLeadership(g.ctx, g.c.self, to)
}

// readsFenced reports whether a leadership transfer of this term stops
// reads (transferLeadership).
func (g *shardGroup) readsFenced(term uint64, now time.Time) bool {
	return g.noReadsTerm.Load() == term && now.UnixNano() < g.noReadsUntil.Load()
}
