package dsdbackend

import (
	"context"

	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Storage is a session.Storage over dsd's StorageService (Store) and
// SessionService (Release). It is safe for concurrent use.
type Storage struct {
	storage  dsdv1.StorageServiceClient
	sessions dsdv1.SessionServiceClient
	b        *Backend
}

var _ session.Storage = (*Storage)(nil)

// NewStorage returns a Storage that stores through storage and releases
// QoS 2 packet ids through sessions, while reg holds a lease.
func NewStorage(storage dsdv1.StorageServiceClient, sessions dsdv1.SessionServiceClient, reg Registrar, opts Options) *Storage {
	return &Storage{storage: storage, sessions: sessions, b: New(sessions, reg, opts)}
}

// Store implements session.Storage: one StorageService.Store with
// Producer{client id, epoch = guard, first_seq, qos2_packet_ids}. STORED and
// DUPLICATE both mean committed.
func (s *Storage) Store(ctx context.Context, req session.StoreRequest) error {
	r, err := s.b.reg.Held()
	if err != nil {
		return storeError(ctx, "store", err)
	}
	in := &dsdv1.StoreRequest{
		ClientId: req.ClientID,
		Messages: make([]*storagev1.Message, len(req.Messages)),
		Producer: &dsdv1.Producer{ClientId: req.ClientID, Epoch: req.Guard, FirstSeq: req.FirstSeq},
	}
	for i := range req.Messages {
		m := &req.Messages[i]
		in.Messages[i] = &storagev1.Message{
			Topic:             m.Topic,
			Payload:           m.Payload,
			Qos:               uint32(m.QoS),
			Retain:            m.Retain,
			PublisherClientId: req.ClientID,
			Properties:        propertiesToProto(&m.Properties),
		}
	}
	if req.QoS2PacketIDs != nil {
		in.Producer.Qos2PacketIds = make([]uint32, len(req.QoS2PacketIDs))
		for i, id := range req.QoS2PacketIDs {
			in.Producer.Qos2PacketIds[i] = uint32(id)
		}
	}
	// The producer sequence makes a repeated Store harmless (DUPLICATE),
	// so a dsd restart delays the PUBACK instead of failing the PUBLISH.
	return s.b.retry(ctx, r, "store", storeError, func(ctx context.Context) error {
		_, err := s.storage.Store(ctx, in)
		return err
	})
}

// Release implements session.Storage: SessionService.Release, which dsd
// syncs before answering.
func (s *Storage) Release(ctx context.Context, req session.ReleaseRequest) (bool, error) {
	r, err := s.b.reg.Held()
	if err != nil {
		return false, storeError(ctx, "release", err)
	}
	var out *dsdv1.ReleaseResponse
	err = s.b.call(ctx, r, func(ctx context.Context) (err error) {
		out, err = s.sessions.Release(ctx, &dsdv1.ReleaseRequest{ClientId: req.ClientID, Guard: req.Guard, PacketId: uint32(req.PacketID)})
		return err
	})
	if err != nil {
		return false, storeError(ctx, "release", err)
	}
	return out.GetReleased(), nil
}
