package server

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// errNoCluster: a site call reached a dsd that runs no metadata group
// (a server built without Options.Cluster, as in unit tests).
var errNoCluster = errors.New("dsd: this dsd runs no cluster membership")

// siteService is SiteService: the raft transport between sites and
// joining the cluster, both handled by the metadata group's package, and
// the shared groups' work across sites.
type siteService struct {
	dsdv1.UnimplementedSiteServiceServer
	cluster *cluster.Cluster
	// db and live serve Shared (shared_remote.go): live reports whether
	// a member of a group reads on one of this site's gateway links. db
	// is nil without a cluster.
	db   *storage.DB
	live func(filter string) bool
}

func (s *siteService) Link(stream grpc.BidiStreamingServer[dsdv1.LinkRequest, dsdv1.LinkResponse]) error {
	if s.cluster == nil {
		return statusFor(errNoCluster)
	}
	tr := s.cluster.Transport()
	if tr == nil {
		return statusFor(cluster.ErrNotRunning)
	}
	return statusFor(tr.Serve(stream))
}

func (s *siteService) Join(ctx context.Context, req *dsdv1.JoinRequest) (*dsdv1.JoinResponse, error) {
	if s.cluster == nil {
		return nil, statusFor(errNoCluster)
	}
	resp, err := s.cluster.Join(ctx, req)
	return resp, statusFor(err)
}

func (s *siteService) ShardSnapshot(req *dsdv1.ShardSnapshotRequest, stream grpc.ServerStreamingServer[dsdv1.ShardSnapshotResponse]) error {
	if s.cluster == nil {
		return statusFor(errNoCluster)
	}
	return statusFor(s.cluster.ServeShardSnapshot(req, stream.Send))
}

// clusterInfo is the ClusterInfo of Info, nil without a cluster.
func clusterInfo(c *cluster.Cluster) *dsdv1.ClusterInfo {
	if c == nil {
		return nil
	}
	st := c.Status()
	out := &dsdv1.ClusterInfo{
		State: c.State(), NSites: uint32(c.NSites()), Leader: st.Leader,
		Term: st.Term, CommitIndex: st.Commit, AppliedIndex: st.Applied,
	}
	for _, g := range c.ShardStatuses() {
		out.ShardGroups = append(out.ShardGroups, &dsdv1.ShardGroupInfo{Shard: uint32(g.Shard), Leader: g.Leader,
			Term: g.Term, CommitIndex: g.Commit, AppliedIndex: g.Applied})
	}
	return out
}

// replicatesAny reports whether the allocation replicates a shard over
// more than one site.
func replicatesAny(c *cluster.Cluster) bool {
	for _, p := range c.State().GetMessages().GetShards() {
		if len(p.GetReplicas()) > 1 {
			return true
		}
	}
	return false
}
