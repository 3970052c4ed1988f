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
	deleted, err := s.db.DeleteRetained(ctx, req.GetTopic())
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.DeleteRetainedResponse{Deleted: deleted}, nil
}
