package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stratamq/strata/dsd/meta"
	"github.com/stratamq/strata/dsd/placement"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// ErrNoSites: a replica set change named no site, or a site that is not a
// member.
var ErrNoSites = errors.New("cluster: the replica sites must be members, and at least one")

// SetReplicas records sites as the storage's replica sites (seed 002's
// set_replicas): each shard's target set becomes its allocation over sites
// (dsd/placement, with the storage's replication factor) and its pending
// transitions are planned, lost sites removed first. The sites concerned
// run them in the background (transitions_run.go).
func (c *Cluster) SetReplicas(ctx context.Context, sites []string) error {
	if len(sites) == 0 {
		return ErrNoSites
	}
	for _, s := range sites {
		if c.Site(s) == nil {
			return fmt.Errorf("%w: %s", ErrNoSites, s)
		}
	}
	ms := c.State().GetMessages()
	if len(ms.GetShards()) == 0 {
		return meta.ErrNotAllocated
	}
	st2 := &clusterv1.SetTargets{}
	for shard, set := range placement.Allocate(int(ms.GetNShards()), sites, int(ms.GetReplicationFactor())) {
		st2.Shards = append(st2.Shards, &clusterv1.ShardPlacement{Shard: uint32(shard), Targets: set})
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProposalTimeout)
	defer cancel()
	return c.propose(ctx, &clusterv1.Command{Command: &clusterv1.Command_SetTargets{SetTargets: st2}})
}

// ErrNotReplicaSite: leave named a site that holds no replica.
var ErrNotReplicaSite = errors.New("cluster: the site is not a replica site")

// AddReplicaSite adds site to the storage's replica sites (seed 002's
// join); a site already in them changes nothing.
func (c *Cluster) AddReplicaSite(ctx context.Context, site string) error {
	sites := c.ReplicaSites()
	if slices.Contains(sites, site) {
		return nil
	}
	return c.SetReplicas(ctx, append(sites, site))
}

// RemoveReplicaSite removes site from the storage's replica sites (seed
// 002's leave): its replicas move to the others.
func (c *Cluster) RemoveReplicaSite(ctx context.Context, site string) error {
	sites := c.ReplicaSites()
	if !slices.Contains(sites, site) {
		return fmt.Errorf("%w: %s", ErrNotReplicaSite, site)
	}
	return c.SetReplicas(ctx, slices.DeleteFunc(sites, func(s string) bool { return s == site }))
}

// PendingTransitions counts the transitions pending over all shards.
func (c *Cluster) PendingTransitions() int {
	n := 0
	for _, sp := range c.State().GetMessages().GetShards() {
		n += len(sp.GetTransitions())
	}
	return n
}

// ReplicaSites is the storage's replica site list, which join and leave
// change: every site in a replica or target set.
func (c *Cluster) ReplicaSites() []string {
	var replicas, targets [][]string
	for _, sp := range c.State().GetMessages().GetShards() {
		replicas = append(replicas, sp.GetReplicas())
		targets = append(targets, sp.GetTargets())
	}
	return placement.Sites(replicas, targets)
}

// Claim records that this site runs shard's next transition t, before it
// runs it: once applied, no other site may claim it, and this site finds
// it again after a restart (Claimed). Claiming one's own claim again is
// allowed (a resumed transition).
func (c *Cluster) Claim(ctx context.Context, shard uint32, t *clusterv1.Transition) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProposalTimeout)
	defer cancel()
	return c.propose(ctx, &clusterv1.Command{Command: &clusterv1.Command_ClaimTransition{ClaimTransition: &clusterv1.ClaimTransition{
		Shard: shard, Transition: &clusterv1.Transition{Op: t.GetOp(), Site: t.GetSite()}, Site: c.opts.Site, AtUs: time.Now().UnixMicro(),
	}}})
}

// Complete records that shard's next transition t is done: its replica
// set changes and the transition is removed.
func (c *Cluster) Complete(ctx context.Context, shard uint32, t *clusterv1.Transition) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProposalTimeout)
	defer cancel()
	return c.propose(ctx, &clusterv1.Command{Command: &clusterv1.Command_CompleteTransition{CompleteTransition: &clusterv1.CompleteTransition{
		Shard: shard, Transition: &clusterv1.Transition{Op: t.GetOp(), Site: t.GetSite()},
	}}})
}

// ClaimedTransition is a transition this site claimed and has not
// completed.
type ClaimedTransition struct {
	Shard      uint32
	Transition *clusterv1.Transition
}

// Claimed lists the transitions this site claimed and did not complete,
// by shard: what it resumes after a restart.
func (c *Cluster) Claimed() []ClaimedTransition {
	var out []ClaimedTransition
	for _, sp := range c.State().GetMessages().GetShards() {
		if ts := sp.GetTransitions(); len(ts) > 0 && ts[0].GetClaimedBy() == c.opts.Site {
			out = append(out, ClaimedTransition{Shard: sp.GetShard(), Transition: ts[0]})
		}
	}
	slices.SortFunc(out, func(a, b ClaimedTransition) int { return int(a.Shard) - int(b.Shard) })
	return out
}
