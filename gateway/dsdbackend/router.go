package dsdbackend

import (
	"context"
	"fmt"
	"sync"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// EntryOwner receives what dsd pushes for the entries it added through a
// Router: one MQTT connection. Its methods are called from the link's
// receiving goroutine and must not block.
type EntryOwner interface {
	Announced(token uint64, streams []session.AnnouncedStream)
	Batch(token, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool)
	// GrantBatch is a batch of a shared Read entry, with its grant.
	GrantBatch(token, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool, grant session.Grant)
	EntryFailed(token uint64, failure session.EntryFailure, err error)
	// EntriesLost: the link was opened again; every entry is gone.
	EntriesLost()
}

// Router carries the Watch and Read entries of a gateway's connections
// over the lease's link (docs/gateway-link.md) and routes announcements,
// batches and entry errors back to the connection that added each entry.
//
// Requests are queued and sent by one goroutine per open link, so a caller
// (often the link's receiving goroutine itself, handing a batch to a
// connection that then acknowledges it) never blocks on the stream. Entry
// ids are the Router's own, increasing, never reused.
type Router struct {
	mu struct {
		sync.Mutex
		lastID uint64
		// gen counts link openings; a request queued for an older one is
		// dropped.
		gen     uint64
		routes  map[uint64]route
		owners  map[EntryOwner]int
		queue   []queued
		wake    chan struct{}
		linkUp  bool
		stopped bool
	}
}

type route struct {
	owner EntryOwner
	token uint64
}

type queued struct {
	gen uint64
	req *dsdv1.GatewayLinkRequest
}

// NewRouter returns a Router with no link; requests wait for one.
func NewRouter() *Router {
	r := &Router{}
	r.mu.routes = map[uint64]route{}
	r.mu.owners = map[EntryOwner]int{}
	r.mu.wake = make(chan struct{}, 1)
	return r
}

// AddWatch adds a Watch entry for owner over every shard, shard i from
// starts[i], tied to the session ref; it returns the entry id, for Remove.
func (r *Router) AddWatch(owner EntryOwner, token uint64, ref *dsdv1.SessionRef, filter string, starts []int64) uint64 {
	shards := make([]*dsdv1.WatchShard, len(starts))
	for i, start := range starts {
		shards[i] = &dsdv1.WatchShard{Shard: uint32(i), StartTimeUs: start}
	}
	return r.add(owner, token, func(id uint64) *dsdv1.GatewayLinkRequest {
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Watch{Watch: &dsdv1.WatchEntry{
			EntryId: id, TopicFilter: filter, Shards: shards, Session: ref,
		}}}
	})
}

// AddRead adds a Read entry for owner, tied to the session ref: at most
// window messages unacknowledged, batches of at most batchSize (0: dsd's).
func (r *Router) AddRead(owner EntryOwner, token uint64, ref *dsdv1.SessionRef, iterator []byte, window, batchSize uint32) uint64 {
	return r.add(owner, token, func(id uint64) *dsdv1.GatewayLinkRequest {
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{
			EntryId: id, Iterator: iterator, Window: max(window, 1), MaxBatchMessages: batchSize, Session: ref,
		}}}
	})
}

// AddSharedRead adds a member's Read entry of a shared group's stream
// (dsd/server shared_read.go): batches come as grants (GrantBatch).
func (r *Router) AddSharedRead(owner EntryOwner, token uint64, ref *dsdv1.SessionRef, iterator []byte, window, batchSize uint32, shared *dsdv1.SharedRead) uint64 {
	return r.add(owner, token, func(id uint64) *dsdv1.GatewayLinkRequest {
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{
			EntryId: id, Iterator: iterator, Window: max(window, 1), MaxBatchMessages: batchSize, Session: ref, Shared: shared,
		}}}
	})
}

// AckShared tells a shared group that the session finished a grant. It is
// not tied to an entry: the grant outlives the entry that pushed it.
func (r *Router) AckShared(ref *dsdv1.SessionRef, filter string, grant uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.enqueueLocked(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_SharedAck{SharedAck: &dsdv1.SharedAck{
		Filter: filter, Grant: grant, Session: ref}}})
}

func (r *Router) add(owner EntryOwner, token uint64, build func(id uint64) *dsdv1.GatewayLinkRequest) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.lastID++
	id := r.mu.lastID
	r.mu.routes[id] = route{owner: owner, token: token}
	r.mu.owners[owner]++
	r.enqueueLocked(build(id))
	return id
}

// Ack releases the window held by one batch of a Read entry.
func (r *Router) Ack(id, batchSeq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.mu.routes[id]; ok {
		r.enqueueLocked(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: &dsdv1.BatchAck{EntryId: id, BatchSeq: batchSeq}}})
	}
}

// Remove ends an entry; nothing more is routed for it.
func (r *Router) Remove(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dropLocked(id) {
		r.enqueueLocked(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Remove{Remove: &dsdv1.RemoveEntry{EntryId: id}}})
	}
}

func (r *Router) dropLocked(id uint64) bool {
	rt, ok := r.mu.routes[id]
	if !ok {
		return false
	}
	delete(r.mu.routes, id)
	if r.mu.owners[rt.owner]--; r.mu.owners[rt.owner] <= 0 {
		delete(r.mu.owners, rt.owner)
	}
	return true
}

func (r *Router) enqueueLocked(req *dsdv1.GatewayLinkRequest) {
	if r.mu.stopped {
		return
	}
	r.mu.queue = append(r.mu.queue, queued{gen: r.mu.gen, req: req})
	select {
	case r.mu.wake <- struct{}{}:
	default:
	}
}

// linkOpened starts a new link generation: every entry of the previous
// link is gone, so each owner is told to add its entries again.
func (r *Router) linkOpened() {
	r.mu.Lock()
	first := r.mu.gen == 0
	r.mu.gen++
	r.mu.linkUp = true
	owners := make([]EntryOwner, 0, len(r.mu.owners))
	for o := range r.mu.owners {
		owners = append(owners, o)
	}
	clear(r.mu.routes)
	clear(r.mu.owners)
	r.mu.queue = nil
	r.mu.Unlock()
	if first {
		return
	}
	for _, o := range owners {
		o.EntriesLost()
	}
}

// linkClosed stops sending until the next link opens.
func (r *Router) linkClosed() {
	r.mu.Lock()
	r.mu.linkUp = false
	r.mu.Unlock()
}

// send drains the queue onto link until ctx ends or a send fails.
func (r *Router) send(ctx context.Context, link *client.Link) error {
	for {
		r.mu.Lock()
		gen, batch := r.mu.gen, r.mu.queue
		r.mu.queue = nil
		wake := r.mu.wake
		r.mu.Unlock()
		if err := sendBatch(link.Send, link.Welcome.GetBatchAcks(), batch, gen); err != nil {
			return fmt.Errorf("dsdbackend: link send: %w", err)
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// maxAcksPerRequest bounds the BatchAcks of one request.
const maxAcksPerRequest = 1024

// sendBatch sends the requests of generation gen in order. Consecutive
// BatchAcks go as one request (BatchAcks) when dsd takes them (together):
// a gateway fanning a stream out acknowledges a batch per session, and a
// request each cost dsd a receive each.
func sendBatch(send func(*dsdv1.GatewayLinkRequest) error, together bool, batch []queued, gen uint64) error {
	var acks []*dsdv1.BatchAck
	flush := func() error {
		var err error
		switch len(acks) {
		case 0:
		case 1:
			err = send(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: acks[0]}})
		default:
			err = send(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Acks{Acks: &dsdv1.BatchAcks{Acks: acks}}})
		}
		acks = nil
		return err
	}
	for _, q := range batch {
		if q.gen != gen {
			continue
		}
		if a := q.req.GetAck(); a != nil && together {
			if acks = append(acks, a); len(acks) == maxAcksPerRequest {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		if err := send(q.req); err != nil {
			return err
		}
	}
	return flush()
}

// dispatch routes one response of the link; it reports whether it was an
// entry's.
func (r *Router) dispatch(resp *dsdv1.GatewayLinkResponse) bool {
	switch k := resp.GetKind().(type) {
	case *dsdv1.GatewayLinkResponse_Announcement:
		a := k.Announcement
		rt, ok := r.lookup(a.GetEntryId(), false)
		if ok {
			streams := make([]session.AnnouncedStream, 0, len(a.GetStreams()))
			for _, s := range a.GetStreams() {
				st := s.GetStream()
				streams = append(streams, session.AnnouncedStream{
					Stream:   session.StreamID{Shard: st.GetShard(), Generation: st.GetGeneration(), StaticIndex: string(st.GetStaticIndex())},
					Iterator: s.GetIterator(),
				})
			}
			rt.owner.Announced(rt.token, streams)
		}
	case *dsdv1.GatewayLinkResponse_Batch:
		// The messages, decoded once, go to every entry the batch is for
		// (shared: entries reading the same stream from the same
		// position); owners only read them.
		b := k.Batch
		msgs := make([]*storagev1.Message, 0, len(b.GetMessages()))
		for _, m := range b.GetMessages() {
			msgs = append(msgs, m.GetMessage())
		}
		if rt, ok := r.lookup(b.GetEntryId(), b.GetEndOfStream()); ok {
			if g := b.GetGrant(); g != nil {
				rt.owner.GrantBatch(rt.token, b.GetBatchSeq(), msgs, b.GetIterator(), b.GetEndOfStream(),
					session.Grant{ID: g.GetId(), ItBegin: g.GetItBegin(), Redelivery: g.GetRedelivery()})
			} else {
				rt.owner.Batch(rt.token, b.GetBatchSeq(), msgs, b.GetIterator(), b.GetEndOfStream())
			}
		}
		for _, s := range b.GetShared() {
			if rt, ok := r.lookup(s.GetEntryId(), false); ok {
				rt.owner.Batch(rt.token, s.GetBatchSeq(), msgs, s.GetIterator(), false)
			}
		}
	case *dsdv1.GatewayLinkResponse_Error:
		e := k.Error
		if !e.GetEntryEnded() {
			return true // a refused request on a live entry: nothing to route
		}
		rt, ok := r.lookup(e.GetEntryId(), true)
		if ok {
			f, err := entryError(e)
			rt.owner.EntryFailed(rt.token, f, err)
		}
	default:
		return false
	}
	return true
}

func (r *Router) lookup(id uint64, ended bool) (route, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt, ok := r.mu.routes[id]
	if ok && ended {
		r.dropLocked(id)
	}
	return rt, ok
}

// stop drops everything queued; later requests are ignored.
func (r *Router) stop() {
	r.mu.Lock()
	r.mu.stopped = true
	r.mu.queue = nil
	r.mu.Unlock()
}
