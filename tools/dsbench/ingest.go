package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// ingestStorer stores through dsd's ingest stream (StorageService.Ingest),
// the gateways' publish path: one stream per connection, carrying the
// Stores of every worker on that connection. A frame leaves as soon as the
// previous one is out, with every Store queued meanwhile; each Store is
// answered once committed. Ingest needs producer state, so every Store has
// it.
type ingestStorer struct {
	streams []*ingestStream
	cancel  context.CancelFunc
	g       *errgroup.Group
}

// ingestStream is one ingest stream and the Stores waiting on it.
type ingestStream struct {
	stream dsdv1.StorageService_IngestClient
	wake   chan struct{}
	mu     struct {
		sync.Mutex
		queue   []*dsdv1.IngestStore
		waiting map[uint64]chan error
		next    uint64
		err     error // the stream broke: every later Store fails with it
	}
}

func newIngestStorer(ctx context.Context, conns []*client.Client) (*ingestStorer, error) {
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	s := &ingestStorer{cancel: cancel, g: g}
	for _, c := range conns {
		stream, err := c.Storage.Ingest(ctx)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("open ingest stream: %w", err)
		}
		is := &ingestStream{stream: stream, wake: make(chan struct{}, 1)}
		is.mu.waiting = make(map[uint64]chan error)
		s.streams = append(s.streams, is)
		g.Go(func() error { return is.sendLoop(gctx) })
		g.Go(func() error { return is.recvLoop() })
	}
	return s, nil
}

// close ends the streams and waits for their goroutines.
func (s *ingestStorer) close() {
	s.cancel()
	_ = s.g.Wait()
}

func (s *ingestStorer) store(ctx context.Context, worker int, clientID string, msgs []*storagev1.Message, firstSeq uint64) error {
	st := &dsdv1.IngestStore{ClientId: clientID, Producer: &dsdv1.Producer{Epoch: 1, FirstSeq: firstSeq}, Messages: make([][]byte, len(msgs))}
	for i, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		st.Messages[i] = b
	}
	is := s.streams[worker%len(s.streams)]
	done := make(chan error, 1)
	is.mu.Lock()
	if err := is.mu.err; err != nil {
		is.mu.Unlock()
		return err
	}
	is.mu.next++
	st.Id = is.mu.next
	is.mu.waiting[st.Id] = done
	is.mu.queue = append(is.mu.queue, st)
	is.mu.Unlock()
	select {
	case is.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendLoop sends what is queued, one frame at a time.
func (is *ingestStream) sendLoop(ctx context.Context) error {
	defer func() { _ = is.stream.CloseSend() }()
	for {
		select {
		case <-is.wake:
		case <-ctx.Done():
			return nil
		}
		is.mu.Lock()
		q := is.mu.queue
		is.mu.queue = nil
		is.mu.Unlock()
		if len(q) == 0 {
			continue
		}
		if err := is.stream.Send(&dsdv1.IngestRequest{Stores: q}); err != nil {
			is.fail(fmt.Errorf("ingest send: %w", err))
			return nil
		}
	}
}

// recvLoop answers the waiting Stores.
func (is *ingestStream) recvLoop() error {
	for {
		res, err := is.stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Canceled {
				is.fail(fmt.Errorf("ingest receive: %w", err))
			} else {
				is.fail(errors.New("ingest stream closed"))
			}
			return nil
		}
		is.mu.Lock()
		for _, id := range res.GetStored() {
			if ch := is.mu.waiting[id]; ch != nil {
				delete(is.mu.waiting, id)
				ch <- nil
			}
		}
		for _, f := range res.GetFailed() {
			if ch := is.mu.waiting[f.GetId()]; ch != nil {
				delete(is.mu.waiting, f.GetId())
				ch <- fmt.Errorf("store %d refused: %s (%s)", f.GetId(), f.GetMessage(), codes.Code(f.GetCode()))
			}
		}
		is.mu.Unlock()
	}
}

// fail ends the stream: every waiting and later Store fails with err.
func (is *ingestStream) fail(err error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.mu.err == nil {
		is.mu.err = err
	}
	for id, ch := range is.mu.waiting {
		delete(is.mu.waiting, id)
		ch <- is.mu.err
	}
}
