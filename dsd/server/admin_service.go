package server

import (
	"context"
	"fmt"

	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// adminService implements strata.dsd.v1.AdminService over a storage.DB
// (and the cluster, for the replica sites).
type adminService struct {
	dsdv1.UnimplementedAdminServiceServer
	db      *storage.DB
	cluster *cluster.Cluster
}

// shards resolves an optional shard to the list of shards it names.
func (s *adminService) shards(shard *uint32) ([]int, error) {
	if shard == nil {
		all := make([]int, s.db.NShards())
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	if int(*shard) >= s.db.NShards() {
		return nil, fmt.Errorf("%w: shard %d does not exist (n_shards = %d)", errInvalidRequest, *shard, s.db.NShards())
	}
	return []int{int(*shard)}, nil
}

func (s *adminService) ListGenerations(ctx context.Context, req *dsdv1.ListGenerationsRequest) (*dsdv1.ListGenerationsResponse, error) {
	shards, err := s.shards(req.Shard)
	if err != nil {
		return nil, statusFor(err)
	}
	out := &dsdv1.ListGenerationsResponse{}
	for _, shard := range shards {
		counts := s.db.MessageCounts(shard)
		for _, g := range s.db.Generations(shard) {
			out.Generations = append(out.Generations, &dsdv1.ShardGeneration{Shard: uint32(shard), Generation: g, Messages: counts[g.GetId()]})
		}
	}
	return out, nil
}

func (s *adminService) AddGeneration(ctx context.Context, req *dsdv1.AddGenerationRequest) (*dsdv1.AddGenerationResponse, error) {
	shards, err := s.shards(req.Shard)
	if err != nil {
		return nil, statusFor(err)
	}
	out := &dsdv1.AddGenerationResponse{}
	for _, shard := range shards {
		g, err := s.db.AddGeneration(shard)
		if err != nil {
			return nil, statusFor(fmt.Errorf("shard %d: %w", shard, err))
		}
		out.Generations = append(out.Generations, &dsdv1.ShardGeneration{Shard: uint32(shard), Generation: g})
	}
	return out, nil
}

func (s *adminService) DropGeneration(ctx context.Context, req *dsdv1.DropGenerationRequest) (*dsdv1.DropGenerationResponse, error) {
	shard := req.GetShard()
	if _, err := s.shards(&shard); err != nil {
		return nil, statusFor(err)
	}
	if err := s.db.DropGeneration(int(shard), req.GetGeneration()); err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.DropGenerationResponse{}, nil
}

func (s *adminService) LearnedStructure(ctx context.Context, req *dsdv1.LearnedStructureRequest) (*dsdv1.LearnedStructureResponse, error) {
	shard := req.GetShard()
	if _, err := s.shards(&shard); err != nil {
		return nil, statusFor(err)
	}
	ls, err := s.db.LearnedStructure(int(shard), req.GetGeneration())
	if err != nil {
		return nil, statusFor(err)
	}
	out := &dsdv1.LearnedStructureResponse{Shard: shard, Generation: ls.Generation, TrieStates: uint64(ls.TrieStates), AtCapacity: ls.AtCapacity}
	for _, st := range ls.Streams {
		out.Streams = append(out.Streams, &dsdv1.LearnedStream{StaticIndex: st.StaticIndex, Structure: st.Structure, Messages: st.Count})
	}
	return out, nil
}

func (s *adminService) ListSharedGroups(ctx context.Context, req *dsdv1.ListSharedGroupsRequest) (*dsdv1.ListSharedGroupsResponse, error) {
	out := &dsdv1.ListSharedGroupsResponse{}
	for _, g := range s.db.SharedGroups(req.GetFilter()) {
		out.Groups = append(out.Groups, &dsdv1.SharedGroup{Filter: g.Filter, Shard: uint32(g.Shard), Streams: g.Streams, Grants: g.Grants})
	}
	return out, nil
}

func (s *adminService) UpdateReplicas(ctx context.Context, req *dsdv1.UpdateReplicasRequest) (*dsdv1.UpdateReplicasResponse, error) {
	if s.cluster == nil {
		return nil, statusFor(errNoCluster)
	}
	var err error
	switch ch := req.GetChange().(type) {
	case *dsdv1.UpdateReplicasRequest_Set:
		err = s.cluster.SetReplicas(ctx, ch.Set.GetSites())
	case *dsdv1.UpdateReplicasRequest_Join:
		err = s.cluster.AddReplicaSite(ctx, ch.Join)
	case *dsdv1.UpdateReplicasRequest_Leave:
		err = s.cluster.RemoveReplicaSite(ctx, ch.Leave)
	default:
		err = fmt.Errorf("%w: set, join or leave is required", errInvalidRequest)
	}
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.UpdateReplicasResponse{Sites: s.cluster.ReplicaSites(), Transitions: uint32(s.cluster.PendingTransitions())}, nil
}
