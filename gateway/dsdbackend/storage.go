package dsdbackend

import (
	"context"

	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Storage is a session.Storage over dsd: Stores travel on the gateway's
// ingest stream (Ingest), Releases are SessionService calls. It is safe for
// concurrent use.
type Storage struct {
	ingest *Ingest
	b      *Backend
}

var _ session.Storage = (*Storage)(nil)

// NewStorage returns a Storage that stores through storage's ingest stream
// and releases QoS 2 packet ids through sessions, while reg holds a lease.
// Close stops its ingest stream.
func NewStorage(storage dsdv1.StorageServiceClient, sessions dsdv1.SessionServiceClient, reg Registrar, opts Options, ingest IngestOptions) *Storage {
	return &Storage{ingest: NewIngest(storage, reg, ingest), b: New(sessions, reg, opts)}
}

// NewRoutedStorage is NewStorage over the sites of pool: each Store goes to
// the leader of its shard (NewRoutedIngest), each Release to the leader of
// the session's shard.
func NewRoutedStorage(pool *Pool, reg Registrar, opts Options, ingest IngestOptions) *Storage {
	return &Storage{ingest: NewRoutedIngest(pool, reg, ingest), b: NewRouted(pool, reg, opts)}
}

// Submit implements session.Storage: an IngestStore with the producer
// (client id, epoch = guard, first_seq, qos2_packet_ids). STORED and
// DUPLICATE both mean committed.
func (s *Storage) Submit(req session.StoreRequest, done func(error)) {
	s.ingest.Submit(req, done)
}

// IngestDepth is Ingest.Depth, for the gateway's metrics.
func (s *Storage) IngestDepth() (queued, unanswered int) { return s.ingest.Depth() }

// Close stops the ingest stream; Stores still waiting fail.
func (s *Storage) Close() error {
	return s.ingest.Close()
}

// Release implements session.Storage: SessionService.Release, which dsd
// syncs before answering, retried while dsd is unreachable and the lease
// holds.
func (s *Storage) Release(ctx context.Context, req session.ReleaseRequest) (bool, error) {
	r, err := s.b.reg.Held()
	if err != nil {
		return false, storeError(ctx, "release", err)
	}
	// Releasing is idempotent, so a dsd restart delays the PUBCOMP instead
	// of closing the connection, as for a Store. An attempt after one whose
	// answer was lost may find the id released already: then it was
	// released by this exchange.
	var out *dsdv1.ReleaseResponse
	attempts := 0
	err = s.b.retry(ctx, r, "release", storeError, func(ctx context.Context) (err error) {
		attempts++
		out, err = s.b.sessions(req.ClientID).Release(ctx, &dsdv1.ReleaseRequest{ClientId: req.ClientID, Guard: req.Guard, PacketId: uint32(req.PacketID)})
		return err
	})
	if err != nil {
		return false, err
	}
	return out.GetReleased() || attempts > 1, nil
}
