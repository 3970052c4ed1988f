package cluster

import (
	"context"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/stratamq/strata/dsd/meta"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// leaderDuties runs, while this site leads the group, the liveness check
// and the first allocation (doc.go, "Leader duties").
func (c *Cluster) leaderDuties() {
	t := time.NewTicker(c.opts.LivenessInterval)
	defer t.Stop()
	var leaderSince time.Time
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		n := c.node.Load()
		if n == nil {
			return
		}
		if n.Status().RaftState != raft.StateLeader {
			leaderSince = time.Time{}
			continue
		}
		now := time.Now()
		if leaderSince.IsZero() {
			leaderSince = now
		}
		st := c.State()
		for _, s := range st.GetSites() {
			up := s.GetId() == c.opts.Site || now.Sub(c.lastHeard(s.GetId())) < c.opts.DownAfter
			if !up && now.Sub(leaderSince) < c.opts.DownAfter {
				continue // a new leader first gives every site a chance to be heard
			}
			if up != s.GetUp() {
				cmd := &clusterv1.Command{Command: &clusterv1.Command_SetSiteStatus{SetSiteStatus: &clusterv1.SetSiteStatus{Site: s.GetId(), Up: up, AtUs: now.UnixMicro()}}}
				if c.proposeQuietly(cmd) {
					c.log.Info("site liveness changed", "site", s.GetId(), "up", up, "last_heard", c.lastHeard(s.GetId()))
				}
			}
		}
		if len(st.GetMessages().GetShards()) == 0 && len(st.GetSites()) >= c.opts.NSites {
			var ids []string
			for _, s := range st.GetSites() {
				ids = append(ids, s.GetId())
			}
			alloc := meta.PlanAllocation(c.opts.NShards, ids, c.opts.ReplicationFactor)
			if c.proposeQuietly(&clusterv1.Command{Command: &clusterv1.Command_Allocate{Allocate: alloc}}) {
				c.log.Info("shards allocated", "n_shards", c.opts.NShards, "sites", len(ids), "replicas_per_shard", min(len(ids), c.opts.ReplicationFactor))
			}
		}
	}
}

// proposeQuietly proposes a leader's observation and reports whether it
// was applied; a failure is retried by the next round.
func (c *Cluster) proposeQuietly(cmd *clusterv1.Command) bool {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ProposalTimeout)
	defer cancel()
	if err := c.propose(ctx, cmd); err != nil {
		c.log.Debug("leader proposal failed", "err", err)
		return false
	}
	return true
}
