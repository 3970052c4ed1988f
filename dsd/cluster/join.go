package cluster

import (
	"context"
	"fmt"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/meta"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Join is SiteService.Join's handler: it makes req's site a member (a raft
// conf change), or updates a member's address and node name, and answers
// the members once this site has applied the change.
func (c *Cluster) Join(ctx context.Context, req *dsdv1.JoinRequest) (*dsdv1.JoinResponse, error) {
	site := req.GetSite()
	id, err := meta.NodeID(site.GetId())
	if err != nil {
		return nil, err
	}
	if int(req.GetNShards()) != c.opts.NShards {
		return nil, fmt.Errorf("%w: site %s has n_shards = %d, this cluster %d", ErrNShardsMismatch, site.GetId(), req.GetNShards(), c.opts.NShards)
	}
	n, err := c.running()
	if err != nil {
		return nil, err
	}
	// Dial the site now: the conf change's messages go to it at once.
	c.transport().SetAddress(site.GetId(), site.GetAddress())
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProposalTimeout)
	defer cancel()
	if cur := c.Site(site.GetId()); cur != nil {
		if cur.GetAddress() != site.GetAddress() || cur.GetNode() != site.GetNode() {
			if err := c.propose(ctx, &clusterv1.Command{Command: &clusterv1.Command_SetSite{SetSite: &clusterv1.SetSite{Site: site}}}); err != nil {
				return nil, err
			}
		}
	} else {
		c.joining.Lock()
		defer c.joining.Unlock()
		reqID, ch := c.waiter()
		defer c.unwait(reqID)
		sctx, err := proto.Marshal(site)
		if err != nil {
			return nil, err
		}
		cc := &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: new(id), Context: sctx, Id: new(reqID)}
		if err := n.ProposeConfChange(ctx, cc); err != nil {
			return nil, err
		}
		if err := c.await(ctx, ch); err != nil {
			return nil, err
		}
		st := c.State()
		c.log.Info("site joined", "site", site.GetId(), "address", site.GetAddress(), "sites", len(st.GetSites()))
		if len(st.GetMessages().GetShards()) > 0 {
			c.log.Warn("a site joined after the shards were allocated: it holds no replicas until they are moved to it", "site", site.GetId())
		}
	}
	return &dsdv1.JoinResponse{Sites: c.State().GetSites()}, nil
}

// joinUntilDone calls Join on Options.Join until it succeeds, and records
// the members' addresses. It reports false when Close came first.
func (c *Cluster) joinUntilDone(self *clusterv1.Site) bool {
	pause := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var resp *dsdv1.JoinResponse
		err := c.dialMember(c.opts.Join, func(cl dsdv1.SiteServiceClient) error {
			ctx, cancel := context.WithTimeout(c.ctx, c.opts.ProposalTimeout+time.Second)
			defer cancel()
			var err error
			resp, err = cl.Join(ctx, &dsdv1.JoinRequest{Site: self, NShards: uint32(c.opts.NShards)})
			return err
		})
		if err == nil {
			for _, s := range resp.GetSites() {
				c.transport().SetAddress(s.GetId(), s.GetAddress())
			}
			c.log.Info("joined the cluster", "via", c.opts.Join, "sites", len(resp.GetSites()))
			return true
		}
		if attempt == 1 || attempt%20 == 0 {
			c.log.Warn("cannot join the cluster yet; retrying", "join", c.opts.Join, "attempt", attempt, "err", err)
		}
		if !c.sleep(pause) {
			return false
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// announce tells the members this site's current address after a restart
// (a Join of a member updates its record), so a site that came back on
// another address is dialed there. Once the local log is applied it stops
// when the members already have this address (the usual restart: no call
// at all) or there is no other member; while it is not, it waits a few
// rounds for the log before calling, since a site that moved and is not
// dialed cannot catch up. It stops after one member answered.
func (c *Cluster) announce(self *clusterv1.Site, commitAtStart uint64) {
	pause := 200 * time.Millisecond
	for round := 0; ; round++ {
		c.mu.Lock()
		caughtUp := c.mu.applied >= commitAtStart
		st := c.mu.machine.State()
		c.mu.Unlock()
		var others []string
		for _, s := range st.GetSites() {
			if s.GetId() != c.opts.Site {
				others = append(others, s.GetAddress())
			}
		}
		if c.opts.Join != "" {
			others = append(others, c.opts.Join)
		}
		me := c.Site(c.opts.Site)
		known := me != nil && me.GetAddress() == self.GetAddress() && me.GetNode() == self.GetNode()
		if caughtUp && (known || len(others) == 0) {
			return
		}
		if caughtUp || round >= 3 {
			for _, addr := range others {
				err := c.dialMember(addr, func(cl dsdv1.SiteServiceClient) error {
					ctx, cancel := context.WithTimeout(c.ctx, c.opts.ProposalTimeout+time.Second)
					defer cancel()
					_, err := cl.Join(ctx, &dsdv1.JoinRequest{Site: self, NShards: uint32(c.opts.NShards)})
					return err
				})
				if err == nil {
					return
				}
			}
		}
		if !c.sleep(pause) {
			return
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// sleep waits d; false when Close came first.
func (c *Cluster) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}
