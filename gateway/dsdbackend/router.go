package dsdbackend

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

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
// over the lease's links (docs/gateway-link.md) and routes announcements,
// batches and entry errors back to the connection that added each entry.
//
// Requests are queued per link and sent by one goroutine per open link, so
// a caller (often a link's receiving goroutine itself, handing a batch to
// a connection that then acknowledges it) never blocks on a stream. Entry
// ids are the Router's own, increasing, never reused.
//
// Routed over a Pool (NewRoutedRouter), each entry goes to the link of
// its shard's leader: a Read entry to its stream's shard's, a Watch entry
// is split into one entry per site over the shards that site leads (the
// caller sees one entry). When a link breaks, or a site refuses an entry
// because it does not lead its shard (any more), every entry of the
// owners that had one there is removed and the owners are told they are
// lost (EntriesLost): each adds its entries again, from its positions, and
// they go to the shards' current leaders.
type Router struct {
	pool *Pool
	// lostMu makes removing an owner's entries and telling it one step
	// (lose), so that two paths losing the same owner at once cannot leave
	// entries of its first re-adding behind. Lock order: lostMu, then the
	// owner's own locks (EntriesLost adds entries again), then mu.
	lostMu sync.Mutex

	mu struct {
		sync.Mutex
		lastID uint64
		// entries are the callers' entries by the id Add returned.
		entries map[uint64]*routerEntry
		// subs map the id of each entry dsd knows to its caller's id.
		subs   map[uint64]uint64
		owners map[EntryOwner]int
		// lanes are the links' queues, by site address ("" without a
		// pool).
		lanes   map[string]*lane
		stopped bool
	}
}

// routerEntry is one entry of a caller: one entry in dsd per site it
// spans (sub).
type routerEntry struct {
	owner EntryOwner
	token uint64
	subs  []sub
}

// sub is one entry in one site's link.
type sub struct {
	id   uint64
	site string
	// shards are the shards it reads (routed; nil: not known).
	shards []int
}

// lane is one site link's queue.
type lane struct {
	// gen counts link closings; a request queued for an older link is
	// dropped.
	gen   uint64
	queue []queued
	wake  chan struct{}
	up    bool
}

type queued struct {
	gen uint64
	req *dsdv1.GatewayLinkRequest
}

// NewRouter returns a Router over one dsd, with no link; requests wait for
// one.
func NewRouter() *Router {
	r := &Router{}
	r.mu.entries = map[uint64]*routerEntry{}
	r.mu.subs = map[uint64]uint64{}
	r.mu.owners = map[EntryOwner]int{}
	r.mu.lanes = map[string]*lane{}
	return r
}

// NewRoutedRouter returns a Router whose entries go to their shards'
// leaders, as pool knows them.
func NewRoutedRouter(pool *Pool) *Router {
	r := NewRouter()
	r.pool = pool
	return r
}

// site is the link for shard's entries.
func (r *Router) site(shard int) string {
	if r.pool == nil {
		return ""
	}
	return r.pool.Table().Leader(shard)
}

func (r *Router) laneLocked(site string) *lane {
	l := r.mu.lanes[site]
	if l == nil {
		l = &lane{wake: make(chan struct{}, 1)}
		r.mu.lanes[site] = l
	}
	return l
}

// AddWatch adds a Watch entry for owner over every shard, shard i from
// starts[i], tied to the session ref; it returns the entry id, for Remove.
func (r *Router) AddWatch(owner EntryOwner, token uint64, ref *dsdv1.SessionRef, filter string, starts []int64) uint64 {
	bySite := map[string][]*dsdv1.WatchShard{}
	shardsOf := map[string][]int{}
	var order []string
	for i, start := range starts {
		site := r.site(i)
		if _, ok := bySite[site]; !ok {
			order = append(order, site)
		}
		bySite[site] = append(bySite[site], &dsdv1.WatchShard{Shard: uint32(i), StartTimeUs: start})
		shardsOf[site] = append(shardsOf[site], i)
	}
	if len(order) == 0 {
		order = []string{r.site(0)}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &routerEntry{owner: owner, token: token}
	var first uint64
	for _, site := range order {
		shards := bySite[site]
		id := r.addSubLocked(e, site, shardsOf[site], func(id uint64) *dsdv1.GatewayLinkRequest {
			return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Watch{Watch: &dsdv1.WatchEntry{
				EntryId: id, TopicFilter: filter, Shards: shards, Session: ref,
			}}}
		})
		if first == 0 {
			first = id
		}
	}
	r.addEntryLocked(first, e)
	return first
}

// AddRead adds a Read entry for owner, tied to the session ref: at most
// window messages unacknowledged, batches of at most batchSize (0: dsd's).
func (r *Router) AddRead(owner EntryOwner, token uint64, ref *dsdv1.SessionRef, iterator []byte, window, batchSize uint32) uint64 {
	return r.addRead(owner, token, iterator, func(id uint64) *dsdv1.GatewayLinkRequest {
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{
			EntryId: id, Iterator: iterator, Window: max(window, 1), MaxBatchMessages: batchSize, Session: ref,
		}}}
	})
}

// AddSharedRead adds a member's Read entry of a shared group's stream
// (dsd/server shared_read.go): batches come as grants (GrantBatch).
func (r *Router) AddSharedRead(owner EntryOwner, token uint64, ref *dsdv1.SessionRef, iterator []byte, window, batchSize uint32, shared *dsdv1.SharedRead) uint64 {
	return r.addRead(owner, token, iterator, func(id uint64) *dsdv1.GatewayLinkRequest {
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{
			EntryId: id, Iterator: iterator, Window: max(window, 1), MaxBatchMessages: batchSize, Session: ref, Shared: shared,
		}}}
	})
}

func (r *Router) addRead(owner EntryOwner, token uint64, iterator []byte, build func(id uint64) *dsdv1.GatewayLinkRequest) uint64 {
	site := r.site(-1)
	var shards []int
	if r.pool != nil {
		if sh, ok := IteratorShard(iterator); ok {
			site = r.site(sh)
			shards = []int{sh}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &routerEntry{owner: owner, token: token}
	id := r.addSubLocked(e, site, shards, build)
	r.addEntryLocked(id, e)
	return id
}

// AckShared tells a shared group that the session finished a grant. It is
// not tied to an entry: the grant outlives the entry that pushed it. It
// goes to the leader of the group's shard (that of its filter).
func (r *Router) AckShared(ref *dsdv1.SessionRef, filter string, grant uint64) {
	site := r.site(-1)
	if r.pool != nil {
		t := r.pool.Table()
		site = t.Leader(t.ShardOf(filter))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.enqueueLocked(site, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_SharedAck{SharedAck: &dsdv1.SharedAck{
		Filter: filter, Grant: grant, Session: ref}}})
}

func (r *Router) addSubLocked(e *routerEntry, site string, shards []int, build func(id uint64) *dsdv1.GatewayLinkRequest) uint64 {
	r.mu.lastID++
	id := r.mu.lastID
	e.subs = append(e.subs, sub{id: id, site: site, shards: shards})
	r.enqueueLocked(site, build(id))
	return id
}

func (r *Router) addEntryLocked(id uint64, e *routerEntry) {
	r.mu.entries[id] = e
	for _, s := range e.subs {
		r.mu.subs[s.id] = id
	}
	r.mu.owners[e.owner]++
}

// Ack releases the window held by one batch of a Read entry.
func (r *Router) Ack(id, batchSeq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.mu.entries[id]; ok {
		s := e.subs[0]
		r.enqueueLocked(s.site, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: &dsdv1.BatchAck{EntryId: s.id, BatchSeq: batchSeq}}})
	}
}

// Remove ends an entry; nothing more is routed for it.
func (r *Router) Remove(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(id, 0)
}

// removeLocked drops the entry id and removes its subs in dsd but the one
// that already ended there (ended).
func (r *Router) removeLocked(id, ended uint64) bool {
	e, ok := r.mu.entries[id]
	if !ok {
		return false
	}
	r.dropLocked(id, e)
	for _, s := range e.subs {
		if s.id != ended {
			r.enqueueLocked(s.site, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Remove{Remove: &dsdv1.RemoveEntry{EntryId: s.id}}})
		}
	}
	return true
}

// dropLocked forgets the entry id without telling dsd.
func (r *Router) dropLocked(id uint64, e *routerEntry) {
	delete(r.mu.entries, id)
	for _, s := range e.subs {
		delete(r.mu.subs, s.id)
	}
	if r.mu.owners[e.owner]--; r.mu.owners[e.owner] <= 0 {
		delete(r.mu.owners, e.owner)
	}
}

func (r *Router) enqueueLocked(site string, req *dsdv1.GatewayLinkRequest) {
	if r.mu.stopped {
		return
	}
	l := r.laneLocked(site)
	l.queue = append(l.queue, queued{gen: l.gen, req: req})
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// linkOpened is called when site's link opens: requests queued since
// the last one closed go out on it.
func (r *Router) linkOpened(site string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.laneLocked(site).up = true
}

// linkClosed is called when site's link closed: every entry of the link
// is gone, so each owner that had one there loses all its entries (they
// are removed from the other links) and is told to add them again.
func (r *Router) linkClosed(site string) {
	r.mu.Lock()
	l := r.laneLocked(site)
	l.up = false
	l.gen++
	l.queue = nil
	owners := r.ownersLocked(func(s sub) bool { return s.site == site })
	r.mu.Unlock()
	r.lose(owners, site)
}

// lose removes every entry of owners (from dsd at every site but gone,
// whose link lost them already) and tells each owner, which adds its
// entries again.
func (r *Router) lose(owners []EntryOwner, gone string) {
	if len(owners) == 0 {
		return
	}
	r.lostMu.Lock()
	defer r.lostMu.Unlock()
	r.mu.Lock()
	r.loseLocked(owners, gone)
	r.mu.Unlock()
	for _, o := range owners {
		o.EntriesLost()
	}
}

// retarget follows a change of the pool's table: the owners with an
// entry at a site that no longer leads one of its shards lose all their
// entries, to add them again where the table now says (their entries at
// a site that stepped down would read nothing more, or be refused).
func (r *Router) retarget() {
	if r.pool == nil {
		return
	}
	t := r.pool.Table()
	r.mu.Lock()
	owners := r.ownersLocked(func(s sub) bool {
		return slices.ContainsFunc(s.shards, func(sh int) bool { return t.Leader(sh) != s.site })
	})
	r.mu.Unlock()
	r.lose(owners, "") // routed: no site is ""
}

// reset forgets every entry and queued request, without telling the
// owners: a new registration follows a lost lease, whose connections
// were all closed.
func (r *Router) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.mu.lanes {
		l.gen++
		l.queue = nil
	}
	clear(r.mu.entries)
	clear(r.mu.subs)
	clear(r.mu.owners)
}

// ownersLocked are the owners with an entry that has a sub matching.
func (r *Router) ownersLocked(match func(sub) bool) []EntryOwner {
	seen := map[EntryOwner]bool{}
	var out []EntryOwner
	for _, e := range r.mu.entries {
		for _, s := range e.subs {
			if !seen[e.owner] && match(s) {
				seen[e.owner] = true
				out = append(out, e.owner)
			}
		}
	}
	return out
}

// loseLocked removes every entry of owners: from dsd at every site but
// gone (whose link lost them already).
func (r *Router) loseLocked(owners []EntryOwner, gone string) {
	if len(owners) == 0 {
		return
	}
	lost := map[EntryOwner]bool{}
	for _, o := range owners {
		lost[o] = true
	}
	for id, e := range r.mu.entries {
		if !lost[e.owner] {
			continue
		}
		r.dropLocked(id, e)
		for _, s := range e.subs {
			if s.site != gone {
				r.enqueueLocked(s.site, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Remove{Remove: &dsdv1.RemoveEntry{EntryId: s.id}}})
			}
		}
	}
}

// send drains site's queue onto link until ctx ends or a send fails.
func (r *Router) send(ctx context.Context, site string, link *client.Link) error {
	for {
		r.mu.Lock()
		l := r.laneLocked(site)
		gen, batch := l.gen, l.queue
		l.queue = nil
		wake := l.wake
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

// dispatch routes one response of site's link; it reports whether it was
// an entry's.
func (r *Router) dispatch(site string, resp *dsdv1.GatewayLinkResponse) bool {
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
		if r.pool != nil && codes.Code(e.GetCode()) == codes.Unavailable {
			if _, ok := ParseRefusal(e.GetMessage()); ok {
				r.refused(e)
				return true
			}
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

// route is where a response for an entry goes.
type route struct {
	owner EntryOwner
	token uint64
}

// lookup finds the owner of the entry dsd knows as id; ended drops the
// caller's entry (and removes its other subs in dsd).
func (r *Router) lookup(id uint64, ended bool) (route, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cid, ok := r.mu.subs[id]
	if !ok {
		return route{}, false
	}
	e := r.mu.entries[cid]
	if ended {
		r.removeLocked(cid, id)
	}
	return route{owner: e.owner, token: e.token}, true
}

// refused handles an entry that site ended because it does not lead the
// entry's shard: the pool learns the leader, and the entry's owner loses
// all its entries, to add them again where the table now says. When the
// refusal named no leader (an election is under way), the owner is told
// after a pause, for the table to settle.
func (r *Router) refused(e *dsdv1.EntryError) {
	now := r.pool.ObserveMessage(e.GetMessage())
	r.mu.Lock()
	cid, ok := r.mu.subs[e.GetEntryId()]
	if !ok {
		r.mu.Unlock()
		return
	}
	ent := r.mu.entries[cid]
	owner := ent.owner
	// The refused sub is gone in dsd already; the others are removed.
	delete(r.mu.subs, e.GetEntryId())
	ent.subs = slices.DeleteFunc(ent.subs, func(s sub) bool { return s.id == e.GetEntryId() })
	r.mu.Unlock()
	lose := func() { r.lose([]EntryOwner{owner}, "") } // routed: no site is ""
	if now {
		lose()
		return
	}
	time.AfterFunc(poolFastRefresh, lose)
}

// stop drops everything queued; later requests are ignored.
func (r *Router) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.stopped = true
	for _, l := range r.mu.lanes {
		l.queue = nil
	}
}
