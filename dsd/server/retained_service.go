package server

import (
	"context"
	"fmt"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// defaultRetainedLimit is the page size of MatchRetained when the request
// sets none.
const defaultRetainedLimit = 100

// retainedService implements strata.dsd.v1.RetainedService over a storage.DB.
type retainedService struct {
	dsdv1.UnimplementedRetainedServiceServer
	db *storage.DB
}

func (s *retainedService) MatchRetained(ctx context.Context, req *dsdv1.MatchRetainedRequest) (*dsdv1.MatchRetainedResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = defaultRetainedLimit
	}
	if limit > storage.MaxRetainedLimit {
		return nil, statusFor(fmt.Errorf("%w: match retained: limit %d exceeds %d", errInvalidRequest, limit, storage.MaxRetainedLimit))
	}
	if len(req.GetShards()) > 0 {
		shards := make([]int, len(req.GetShards()))
		for i, sh := range req.GetShards() {
			shards[i] = int(sh)
		}
		recs, next, err := s.db.MatchRetainedRecords(ctx, shards, req.GetTopicFilter(), req.GetPageToken(), limit)
		if err != nil {
			return nil, statusFor(err)
		}
		out := make([]*dsdv1.RetainedEntry, len(recs))
		for i, r := range recs {
			out[i] = &dsdv1.RetainedEntry{Topic: r.Topic, Record: r.Record}
		}
		return &dsdv1.MatchRetainedResponse{Records: out, NextPageToken: next}, nil
	}
	msgs, next, err := s.db.MatchRetained(ctx, req.GetTopicFilter(), req.GetPageToken(), limit)
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.MatchRetainedResponse{Messages: msgs, NextPageToken: next}, nil
}

func (s *retainedService) GetRetained(ctx context.Context, req *dsdv1.GetRetainedRequest) (*dsdv1.GetRetainedResponse, error) {
	m, _, err := s.db.GetRetained(req.GetTopic())
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.GetRetainedResponse{Message: m}, nil
}

func (s *retainedService) DeleteRetained(ctx context.Context, req *dsdv1.DeleteRetainedRequest) (*dsdv1.DeleteRetainedResponse, error) {
	if above := req.GetAboveUs(); above != 0 {
		if err := s.db.DeleteRetainedAbove(ctx, req.GetTopic(), above); err != nil {
			return nil, statusFor(err)
		}
		return &dsdv1.DeleteRetainedResponse{Deleted: true}, nil
	}
	deleted, err := s.db.DeleteRetained(ctx, req.GetTopic())
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.DeleteRetainedResponse{Deleted: deleted}, nil
}
