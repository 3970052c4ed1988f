package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Ingest serves one gateway's ingest stream (docs/api.md "Ingest"): the
// receiving goroutine hands each Store to the engine without waiting for it
// (storage.DB.StoreAsync), and the sending goroutine writes the answers that
// arrived while the previous response was being written, all in one
// response. Nothing is spawned, and no context or timer is made, per Store.
func (s *storageService) Ingest(stream dsdv1.StorageService_IngestServer) error {
	a := &ingestAnswers{wake: make(chan struct{}, 1)}
	g, ctx := errgroup.WithContext(stream.Context())
	g.Go(func() error { return a.sendLoop(ctx, stream) })
	g.Go(func() error {
		err := s.ingestReceive(stream, a)
		a.receiveDone(err)
		return nil
	})
	return g.Wait()
}

// ingestReceive reads requests until the gateway half-closes the stream or
// it breaks, submitting every Store.
func (s *storageService) ingestReceive(stream dsdv1.StorageService_IngestServer, a *ingestAnswers) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.metrics.ingestFrame.Observe(float64(len(req.GetStores())))
		for _, st := range req.GetStores() {
			s.ingestStore(st, a)
		}
	}
}

// ingestStore submits one Store; a malformed one is answered at once.
func (s *storageService) ingestStore(in *dsdv1.IngestStore, a *ingestAnswers) {
	id := in.GetId()
	p := in.GetProducer()
	if p == nil {
		a.answer(id, fmt.Errorf("%w: ingest: store %d has no producer", errInvalidRequest, id))
		return
	}
	ids, err := packetIDs(p.GetQos2PacketIds())
	if err != nil {
		a.answer(id, err)
		return
	}
	msgs := make([]storage.IngestMessage, len(in.GetMessages()))
	for i, b := range in.GetMessages() {
		if msgs[i], err = storage.ParseIngestMessage(b); err != nil {
			a.answer(id, fmt.Errorf("ingest: store %d: message %d: %w", id, i, err))
			return
		}
	}
	producer := &storage.Producer{ClientID: in.GetClientId(), Epoch: p.GetEpoch(), FirstSeq: p.GetFirstSeq(), QoS2PacketIDs: ids}
	a.begin()
	s.metrics.ingestPending.Inc()
	start := time.Now()
	s.db.StoreAsync(in.GetClientId(), msgs, producer, func(res storage.StoreResult, err error) {
		if err == nil {
			s.metrics.observeStore(res.Shard, time.Since(start))
		}
		s.metrics.ingestPending.Dec()
		a.answer(id, err)
		a.end()
	})
}

// ingestAnswers collects the answers of one stream until the sender takes
// them.
type ingestAnswers struct {
	wake chan struct{}
	mu   struct {
		sync.Mutex
		stored []uint64
		failed []*dsdv1.IngestFailure
		// pending counts Stores submitted and not answered.
		pending int
		// received: the receiver has ended (receiveErr says how).
		received   bool
		receiveErr error
	}
}

func (a *ingestAnswers) begin() {
	a.mu.Lock()
	a.mu.pending++
	a.mu.Unlock()
}

func (a *ingestAnswers) end() {
	a.mu.Lock()
	a.mu.pending--
	a.mu.Unlock()
	a.signal()
}

// answer records a Store's result: nil is stored.
func (a *ingestAnswers) answer(id uint64, err error) {
	a.mu.Lock()
	if err == nil {
		a.mu.stored = append(a.mu.stored, id)
	} else {
		st := status.Convert(statusFor(err))
		a.mu.failed = append(a.mu.failed, &dsdv1.IngestFailure{Id: id, Code: uint32(st.Code()), Message: st.Message()})
	}
	a.mu.Unlock()
	a.signal()
}

func (a *ingestAnswers) receiveDone(err error) {
	a.mu.Lock()
	a.mu.received, a.mu.receiveErr = true, err
	a.mu.Unlock()
	a.signal()
}

func (a *ingestAnswers) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// sendLoop writes what has been answered, one response at a time. It ends
// when the receiver has ended and every Store it submitted is answered and
// sent (a gateway that half-closed gets all its answers), or at once when
// the receiver failed or ctx is done (the gateway resends on a new stream).
func (a *ingestAnswers) sendLoop(ctx context.Context, stream dsdv1.StorageService_IngestServer) error {
	for {
		select {
		case <-a.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
		a.mu.Lock()
		resp := &dsdv1.IngestResponse{Stored: a.mu.stored, Failed: a.mu.failed}
		a.mu.stored, a.mu.failed = nil, nil
		done := a.mu.received && (a.mu.receiveErr != nil || a.mu.pending == 0)
		recvErr := a.mu.receiveErr
		a.mu.Unlock()
		if len(resp.Stored) > 0 || len(resp.Failed) > 0 {
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		if done {
			return recvErr
		}
	}
}
