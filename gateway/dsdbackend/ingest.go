package dsdbackend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// IngestOptions configure an Ingest.
type IngestOptions struct {
	// Timeout fails a Store that dsd has not answered this long after it was
	// submitted (its connection then closes). Default 10 s
	// (DefaultIngestTimeout).
	Timeout time.Duration
	// MaxRequestBytes bounds the messages of one request on the stream (a
	// single larger Store still goes alone). Default 1 MiB
	// (DefaultIngestMaxRequestBytes).
	MaxRequestBytes int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Ingest carries the Stores of every connection of the gateway to dsd on
// one long-lived stream (StorageService.Ingest): a Store is queued without
// blocking, the sending goroutine puts everything queued into the next
// request as soon as the previous one is out, and the receiving goroutine
// completes Stores as dsd answers them. Nothing is spawned, and no context
// or timer is made, per Store.
//
// When the stream breaks (dsd restarts), the Stores sent and not answered
// are sent again, in order, on a new stream while the gateway's lease is
// held: the producer sequence makes a Store that was committed a DUPLICATE,
// so a dsd restart only delays acks. When the lease ends, or a Store waits
// longer than Timeout, its Store fails with session.ErrUnavailable.
type Ingest struct {
	client dsdv1.StorageServiceClient
	reg    Registrar
	opts   IngestOptions
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// wake is signalled when a Store is queued.
	wake chan struct{}

	mu struct {
		sync.Mutex
		nextID uint64
		// queue are Stores not sent on the current stream, in order.
		queue []*ingestStore
		// sent are Stores sent on the current stream and not answered.
		sent   map[uint64]*ingestStore
		closed bool
	}
}

// byID orders Stores as they were submitted.
func byID(a, b *ingestStore) int { return cmp.Compare(a.req.Id, b.req.Id) }

// ingestStore is one Store on its way.
type ingestStore struct {
	req      *dsdv1.IngestStore
	bytes    int
	deadline time.Time
	done     func(error)
}

// NewIngest starts an Ingest over client while reg holds a lease. Close
// stops it. opts must pass Validate after EnsureDefaults.
func NewIngest(client dsdv1.StorageServiceClient, reg Registrar, opts IngestOptions) *Ingest {
	opts.EnsureDefaults()
	mustBeValid(opts.Validate())
	g := &Ingest{client: client, reg: reg, opts: opts, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.mu.sent = make(map[uint64]*ingestStore)
	go g.run()
	return g
}

// Submit queues a Store; done is called exactly once with its result (nil
// once dsd committed it), on one of the Ingest's goroutines, never on the
// caller's: a caller may hold the lock done takes. Stores submitted in
// order complete in that order.
func (g *Ingest) Submit(req session.StoreRequest, done func(error)) {
	in := &dsdv1.IngestStore{
		ClientId: req.ClientID,
		Producer: &dsdv1.Producer{Epoch: req.Guard, FirstSeq: req.FirstSeq},
		Messages: make([][]byte, len(req.Messages)),
	}
	n := 0
	for i := range req.Messages {
		in.Messages[i] = encodeMessage(&req.Messages[i])
		n += len(in.Messages[i])
	}
	if req.QoS2PacketIDs != nil {
		in.Producer.Qos2PacketIds = make([]uint32, len(req.QoS2PacketIDs))
		for i, id := range req.QoS2PacketIDs {
			in.Producer.Qos2PacketIds[i] = uint32(id)
		}
	}
	s := &ingestStore{req: in, bytes: n, deadline: time.Now().Add(g.opts.Timeout), done: done}
	g.mu.Lock()
	if g.mu.closed {
		g.mu.Unlock()
		go done(fmt.Errorf("dsdbackend: store: %w: the gateway is closing", session.ErrUnavailable))
		return
	}
	g.mu.nextID++
	in.Id = g.mu.nextID
	g.mu.queue = append(g.mu.queue, s)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Depth returns how many Stores wait to be sent (queued) and how many were
// sent and are not answered yet (unanswered).
func (g *Ingest) Depth() (queued, unanswered int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.mu.queue), len(g.mu.sent)
}

// Close fails what is still queued or unanswered and stops the goroutines.
func (g *Ingest) Close() error {
	g.cancel()
	<-g.done
	return nil
}

// run keeps a stream open while a lease is held and serves it.
func (g *Ingest) run() {
	defer close(g.done)
	bo := newBackoff(time.Second)
	tick := time.NewTicker(g.opts.Timeout / 10)
	defer tick.Stop()
	for g.ctx.Err() == nil {
		r, err := g.reg.Held()
		if err == nil {
			var served bool
			served, err = g.serve(r, tick.C)
			if served {
				bo.reset()
			}
			if r.Ended.Err() != nil {
				g.failAll(fmt.Errorf("dsdbackend: store: %w: %w: the lease ended", session.ErrUnavailable, errNotRegistered))
			}
		} else {
			g.failAll(storeError(g.ctx, "store", err))
		}
		if err != nil && g.ctx.Err() == nil {
			g.opts.Logger.Debug("ingest stream ended; reopening", "err", err)
		}
		g.pause(bo.next(), tick.C)
	}
	g.mu.Lock()
	g.mu.closed = true
	g.mu.Unlock()
	g.failAll(fmt.Errorf("dsdbackend: store: %w: the gateway is closing", session.ErrUnavailable))
}

// pause waits d before the next stream, failing Stores that are late
// meanwhile.
func (g *Ingest) pause(d time.Duration, tick <-chan time.Time) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case now := <-tick:
			g.expire(now)
		case <-g.ctx.Done():
			return
		}
	}
}

// serve opens a stream under registration r and sends on it until it
// breaks, r ends or the Ingest closes. served reports whether the stream
// was opened.
func (g *Ingest) serve(r Registration, tick <-chan time.Time) (served bool, err error) {
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	stop := context.AfterFunc(r.Ended, cancel)
	defer stop()
	stream, err := g.client.Ingest(ctx)
	if err != nil {
		return false, err
	}
	// The receiver ends when the stream breaks or ctx is cancelled.
	var recvErr error
	received := make(chan struct{})
	go func() {
		defer close(received)
		recvErr = g.receive(stream)
	}()
	defer func() {
		cancel()
		<-received
		g.resendSent()
	}()
	for {
		if reqs := g.take(); len(reqs) > 0 {
			if err := stream.Send(&dsdv1.IngestRequest{Stores: reqs}); err != nil {
				return true, err
			}
			continue
		}
		select {
		case <-g.wake:
		case now := <-tick:
			g.expire(now)
		case <-received:
			return true, recvErr
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

// take moves the queued Stores that fit one request to the sent set.
func (g *Ingest) take() []*dsdv1.IngestStore {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*dsdv1.IngestStore
	size := 0
	n := 0
	for _, s := range g.mu.queue {
		if n > 0 && size+s.bytes > g.opts.MaxRequestBytes {
			break
		}
		size += s.bytes
		g.mu.sent[s.req.Id] = s
		out = append(out, s.req)
		n++
	}
	g.mu.queue = g.mu.queue[n:]
	if len(g.mu.queue) == 0 {
		g.mu.queue = nil
	}
	return out
}

// receive completes Stores as dsd answers them, until the stream breaks.
func (g *Ingest) receive(stream dsdv1.StorageService_IngestClient) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		type completion struct {
			s   *ingestStore
			err error
		}
		var cs []completion
		g.mu.Lock()
		for _, id := range resp.GetStored() {
			if s, ok := g.mu.sent[id]; ok {
				delete(g.mu.sent, id)
				cs = append(cs, completion{s: s})
			}
		}
		for _, f := range resp.GetFailed() {
			s, ok := g.mu.sent[f.GetId()]
			if !ok {
				continue
			}
			err := translateCode("store", codes.Code(f.GetCode()), f.GetMessage(), storeCodes)
			if errors.Is(err, session.ErrUnavailable) {
				// dsd is stopping: the Store goes again on the next stream.
				g.opts.Logger.Debug("store answered unavailable; kept for the next stream", "id", f.GetId(), "err", err)
				continue
			}
			delete(g.mu.sent, f.GetId())
			cs = append(cs, completion{s: s, err: err})
		}
		g.mu.Unlock()
		for _, c := range cs {
			c.s.done(c.err)
		}
	}
}

// resendSent puts the Stores sent on a stream that ended back at the head
// of the queue, in their order, to be sent on the next stream.
func (g *Ingest) resendSent() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.mu.sent) == 0 {
		return
	}
	again := make([]*ingestStore, 0, len(g.mu.sent)+len(g.mu.queue))
	for _, s := range g.mu.sent {
		again = append(again, s)
	}
	slices.SortFunc(again, byID)
	g.mu.queue = append(again, g.mu.queue...)
	clear(g.mu.sent)
}

// expire fails the Stores whose deadline passed.
func (g *Ingest) expire(now time.Time) {
	var late []*ingestStore
	g.mu.Lock()
	for id, s := range g.mu.sent {
		if now.After(s.deadline) {
			late = append(late, s)
			delete(g.mu.sent, id)
		}
	}
	g.mu.queue = slices.DeleteFunc(g.mu.queue, func(s *ingestStore) bool {
		if now.After(s.deadline) {
			late = append(late, s)
			return true
		}
		return false
	})
	g.mu.Unlock()
	slices.SortFunc(late, byID)
	if len(late) > 0 {
		g.opts.Logger.Warn("stores not answered in time", "stores", len(late), "timeout", g.opts.Timeout)
	}
	for _, s := range late {
		s.done(fmt.Errorf("dsdbackend: store: %w: no answer from dsd within %s", session.ErrUnavailable, g.opts.Timeout))
	}
}

// failAll fails every queued and unanswered Store with err.
func (g *Ingest) failAll(err error) {
	g.mu.Lock()
	all := g.mu.queue
	for _, s := range g.mu.sent {
		all = append(all, s)
	}
	g.mu.queue = nil
	clear(g.mu.sent)
	g.mu.Unlock()
	slices.SortFunc(all, byID)
	for _, s := range all {
		s.done(err)
	}
}

// encodeMessage encodes m as a strata.storage.v1.Message, directly from the
// PUBLISH's fields: dsd stores these bytes as they are.
func encodeMessage(m *session.Message) []byte {
	b := make([]byte, 0, len(m.Topic)+len(m.Payload)+16)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, m.Topic)
	if len(m.Payload) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Payload)
	}
	if m.QoS != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.QoS))
	}
	if m.Retain {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if props := propertiesToProto(&m.Properties); props != nil {
		pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(props)
		if err != nil {
			// Invariant: marshalling a well-formed in-memory message cannot fail.
			panic(fmt.Sprintf("dsdbackend: marshal properties: %v", err))
		}
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, pb)
	}
	return b
}
