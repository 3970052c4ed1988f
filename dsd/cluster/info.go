package cluster

import (
	"go.etcd.io/raft/v3"

	"github.com/stratamq/strata/dsd/meta"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// State returns a copy of the applied metadata state.
func (c *Cluster) State() *clusterv1.MetaState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.machine.State()
}

// Site returns a copy of a member's record, or nil.
func (c *Cluster) Site(id string) *clusterv1.Site {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.machine.Site(id)
}

// SiteID is this site's id.
func (c *Cluster) SiteID() string { return c.opts.Site }

// NSites is the configured n_sites.
func (c *Cluster) NSites() int { return c.opts.NSites }

// Status is the metadata group's raft status on this site.
type Status struct {
	// Leader is the leader's site id, "" when there is none known.
	Leader string
	// IsLeader: this site leads the group.
	IsLeader bool
	// Running: raft runs here (false before a first Join has returned,
	// and after a storage error).
	Running                bool
	Term, Commit, Applied  uint64
	SnapshotIndex, Members uint64
}

// Status returns the group's raft status as this site sees it.
func (c *Cluster) Status() Status {
	c.mu.Lock()
	out := Status{Applied: c.mu.applied, SnapshotIndex: c.mu.snapIndex, Members: uint64(len(c.mu.cs.GetVoters()))}
	c.mu.Unlock()
	n := c.node.Load()
	if n == nil || c.failed.Load() {
		return out
	}
	st := n.Status()
	out.Running = true
	out.Term, out.Commit = st.GetTerm(), st.GetCommit()
	if st.Lead != raft.None {
		out.Leader = meta.SiteID(st.Lead)
	}
	out.IsLeader = st.RaftState == raft.StateLeader
	return out
}
