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
// one long-lived stream per site (StorageService.Ingest): a Store is
// queued without blocking, the sending goroutine of its site puts
// everything queued for it into the next request as soon as the previous
// one is out, and the receiving goroutine completes Stores as dsd answers
// them. Nothing is spawned, and no context or timer is made, per Store.
//
// When the stream breaks (dsd restarts), the Stores sent and not answered
// are sent again, in order, on a new stream while the gateway's lease is
// held: the producer sequence makes a Store that was committed a DUPLICATE,
// so a dsd restart only delays acks. When the lease ends, or a Store waits
// longer than Timeout, its Store fails with session.ErrUnavailable.
//
// Routed over a Pool (NewRoutedIngest), a Store goes to the leader of its
// shard, and a shard's Stores are in flight to one site at a time: a
// Store refused by a site that does not lead its shard goes back to the
// queue, in submission order, and the shard's Stores move to the new
// leader once none is in flight to the old one. So a publisher's Stores
// reach the new leader in their sequence order, those the old leader
// committed before it stepped down answered DUPLICATE.
type Ingest struct {
	// client is the one dsd of NewIngest; nil when routed over pool.
	client dsdv1.StorageServiceClient
	pool   *Pool
	reg    Registrar
	opts   IngestOptions
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// single is the one site's loop of NewIngest.
	single *ingestSite

	mu struct {
		sync.Mutex
		nextID uint64
		// queue are Stores not sent on a current stream, in order.
		queue []*ingestStore
		// sent are Stores sent on a current stream and not answered.
		sent map[uint64]*ingestStore
		// inflight is, per shard, the site its sent Stores went to and
		// their number (routed only).
		inflight map[int]shardFlight
		// blocked is, per shard, until when its Stores wait after a
		// refusal that named no other leader (routed only).
		blocked map[int]time.Time
		// sites are the running site loops, by address (routed only).
		sites  map[string]*ingestSite
		closed bool
	}
}

// shardFlight is where a shard's Stores are in flight.
type shardFlight struct {
	site string
	n    int
}

// ingestSite is one site's stream loop.
type ingestSite struct {
	addr string
	// wake is signalled when a Store is queued for the site.
	wake chan struct{}
}

// byID orders Stores as they were submitted.
func byID(a, b *ingestStore) int { return cmp.Compare(a.req.Id, b.req.Id) }

// ingestStore is one Store on its way.
type ingestStore struct {
	req      *dsdv1.IngestStore
	bytes    int
	deadline time.Time
	done     func(error)
	// shard is the Store's shard, -1 when not computed (one site).
	shard int
	// site is where it was sent (routed).
	site string
}

// NewIngest starts an Ingest over client while reg holds a lease. Close
// stops it. opts must pass Validate after EnsureDefaults.
func NewIngest(client dsdv1.StorageServiceClient, reg Registrar, opts IngestOptions) *Ingest {
	g := newIngest(reg, opts)
	g.client = client
	g.single = &ingestSite{wake: make(chan struct{}, 1)}
	go func() {
		defer close(g.done)
		g.runSite(g.single)
		g.close()
	}()
	return g
}

// NewRoutedIngest starts an Ingest whose Stores go to the leaders of their
// shards, as pool knows them, while reg holds a lease.
func NewRoutedIngest(pool *Pool, reg Registrar, opts IngestOptions) *Ingest {
	g := newIngest(reg, opts)
	g.pool = pool
	g.mu.inflight = map[int]shardFlight{}
	g.mu.blocked = map[int]time.Time{}
	g.mu.sites = map[string]*ingestSite{}
	go g.runRouted()
	return g
}

func newIngest(reg Registrar, opts IngestOptions) *Ingest {
	opts.EnsureDefaults()
	mustBeValid(opts.Validate())
	g := &Ingest{reg: reg, opts: opts, done: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.mu.sent = make(map[uint64]*ingestStore)
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
	s := &ingestStore{req: in, bytes: n, deadline: time.Now().Add(g.opts.Timeout), done: done, shard: -1}
	site := g.single
	if g.pool != nil {
		t := g.pool.Table()
		if t.Multi() && t.NShards > 0 {
			s.shard = t.ShardOf(req.ClientID)
		}
	}
	g.mu.Lock()
	if g.mu.closed {
		g.mu.Unlock()
		go done(fmt.Errorf("dsdbackend: store: %w: the gateway is closing", session.ErrUnavailable))
		return
	}
	g.mu.nextID++
	in.Id = g.mu.nextID
	g.mu.queue = append(g.mu.queue, s)
	if g.pool != nil {
		site = g.mu.sites[g.pool.Table().Leader(s.shard)]
	}
	g.mu.Unlock()
	if site != nil {
		site.signal()
	} else {
		g.wakeAll()
	}
}

func (s *ingestSite) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wakeAll wakes every site loop (routed): Stores may have moved.
func (g *Ingest) wakeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.mu.sites {
		s.signal()
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

func (g *Ingest) close() {
	g.mu.Lock()
	g.mu.closed = true
	g.mu.Unlock()
	g.failAll(fmt.Errorf("dsdbackend: store: %w: the gateway is closing", session.ErrUnavailable))
}

// runRouted runs a loop per site of the pool's table, starting one for
// each site that appears, and wakes them all when the table changes.
func (g *Ingest) runRouted() {
	defer close(g.done)
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		g.close()
	}()
	for {
		changed := g.pool.Changed()
		g.mu.Lock()
		for _, addr := range g.pool.Table().Sites {
			if g.mu.sites[addr] == nil {
				s := &ingestSite{addr: addr, wake: make(chan struct{}, 1)}
				g.mu.sites[addr] = s
				wg.Add(1)
				go func() {
					defer wg.Done()
					g.runSite(s)
				}()
			}
		}
		g.mu.Unlock()
		g.wakeAll()
		select {
		case <-changed:
		case <-g.ctx.Done():
			return
		}
	}
}

// storage is the StorageService of site.
func (g *Ingest) storage(site *ingestSite) dsdv1.StorageServiceClient {
	if g.client != nil {
		return g.client
	}
	return g.pool.conn(site.addr).Storage
}

// runSite keeps a stream to site open while a lease is held and serves it.
func (g *Ingest) runSite(site *ingestSite) {
	bo := newBackoff(time.Second)
	tick := time.NewTicker(g.opts.Timeout / 10)
	defer tick.Stop()
	for g.ctx.Err() == nil {
		r, err := g.reg.Held()
		if err == nil {
			var served bool
			served, err = g.serve(site, r, tick.C)
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
			g.opts.Logger.Debug("ingest stream ended; reopening", "site", site.addr, "err", err)
			if g.pool != nil {
				g.pool.Stale()
			}
		}
		g.pause(bo.next(), tick.C)
	}
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

// serve opens a stream to site under registration r and sends on it until
// it breaks, r ends or the Ingest closes. served reports whether the
// stream was opened.
func (g *Ingest) serve(site *ingestSite, r Registration, tick <-chan time.Time) (served bool, err error) {
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	stop := context.AfterFunc(r.Ended, cancel)
	defer stop()
	stream, err := g.storage(site).Ingest(ctx)
	if err != nil {
		return false, err
	}
	// The receiver ends when the stream breaks or ctx is cancelled.
	var recvErr error
	received := make(chan struct{})
	go func() {
		defer close(received)
		recvErr = g.receive(site, stream)
	}()
	defer func() {
		cancel()
		<-received
		g.resendSent(site)
	}()
	for {
		if reqs := g.take(site); len(reqs) > 0 {
			if err := stream.Send(&dsdv1.IngestRequest{Stores: reqs}); err != nil {
				return true, err
			}
			continue
		}
		select {
		case <-site.wake:
		case now := <-tick:
			g.expire(now)
		case <-received:
			return true, recvErr
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

// take moves the queued Stores for site that fit one request to the sent
// set.
func (g *Ingest) take(site *ingestSite) []*dsdv1.IngestStore {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pool != nil && g.pool.Table().Multi() {
		return g.takeRoutedLocked(site)
	}
	var out []*dsdv1.IngestStore
	size := 0
	n := 0
	for _, s := range g.mu.queue {
		if n > 0 && size+s.bytes > g.opts.MaxRequestBytes {
			break
		}
		size += s.bytes
		s.site = site.addr
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

// takeRoutedLocked is take over a pool: the Stores whose shard site leads,
// unless the shard waits after a refusal or has Stores in flight to
// another site.
func (g *Ingest) takeRoutedLocked(site *ingestSite) []*dsdv1.IngestStore {
	t := g.pool.Table()
	now := time.Now()
	var out []*dsdv1.IngestStore
	var keep []*ingestStore
	size := 0
	full := false
	for _, s := range g.mu.queue {
		if s.shard < 0 && t.Multi() && t.NShards > 0 {
			s.shard = t.ShardOf(s.req.GetClientId())
		}
		ok := !full && t.Leader(s.shard) == site.addr
		if ok && s.shard >= 0 {
			if until, b := g.mu.blocked[s.shard]; b && now.Before(until) {
				ok = false
			} else if f := g.mu.inflight[s.shard]; f.n > 0 && f.site != site.addr {
				ok = false
			}
		}
		if ok && len(out) > 0 && size+s.bytes > g.opts.MaxRequestBytes {
			ok, full = false, true
		}
		if !ok {
			keep = append(keep, s)
			continue
		}
		size += s.bytes
		s.site = site.addr
		g.mu.sent[s.req.Id] = s
		if s.shard >= 0 {
			f := g.mu.inflight[s.shard]
			g.mu.inflight[s.shard] = shardFlight{site: site.addr, n: f.n + 1}
		}
		out = append(out, s.req)
	}
	g.mu.queue = keep
	return out
}

// unsendLocked forgets that s was sent.
func (g *Ingest) unsendLocked(s *ingestStore) {
	delete(g.mu.sent, s.req.Id)
	if g.pool == nil || s.shard < 0 {
		return
	}
	if f := g.mu.inflight[s.shard]; f.n > 1 {
		g.mu.inflight[s.shard] = shardFlight{site: f.site, n: f.n - 1}
	} else {
		delete(g.mu.inflight, s.shard)
	}
}

// requeueLocked puts Stores back into the queue in submission order.
func (g *Ingest) requeueLocked(again []*ingestStore) {
	if len(again) == 0 {
		return
	}
	g.mu.queue = append(again, g.mu.queue...)
	slices.SortFunc(g.mu.queue, byID)
}

// receive completes Stores as site answers them, until the stream breaks.
func (g *Ingest) receive(site *ingestSite, stream dsdv1.StorageService_IngestClient) error {
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
		var moved []*ingestStore
		var refusals []string
		g.mu.Lock()
		for _, id := range resp.GetStored() {
			if s, ok := g.mu.sent[id]; ok {
				g.unsendLocked(s)
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
				if g.pool != nil {
					if _, ok := ParseRefusal(f.GetMessage()); ok {
						// Not this site's shard (any more): the Store goes
						// back to the queue, for the shard's leader.
						g.unsendLocked(s)
						moved = append(moved, s)
						refusals = append(refusals, f.GetMessage())
						continue
					}
				}
				// dsd is stopping: the Store goes again on the next stream.
				g.opts.Logger.Debug("store answered unavailable; kept for the next stream", "id", f.GetId(), "err", err)
				continue
			}
			g.unsendLocked(s)
			cs = append(cs, completion{s: s, err: err})
		}
		g.requeueLocked(moved)
		g.mu.Unlock()
		if len(moved) > 0 {
			g.rerouted(site, moved, refusals)
		}
		for _, c := range cs {
			c.s.done(c.err)
		}
	}
}

// rerouted tells the pool about the refusals of site and, for a shard
// whose refusal named no other leader, holds its Stores back for a moment
// (its leader is being elected) before they go anywhere again.
func (g *Ingest) rerouted(site *ingestSite, moved []*ingestStore, refusals []string) {
	for _, msg := range refusals {
		g.pool.ObserveMessage(msg)
	}
	t := g.pool.Table()
	block := false
	g.mu.Lock()
	for _, s := range moved {
		if s.shard >= 0 && t.Leader(s.shard) == site.addr {
			g.mu.blocked[s.shard] = time.Now().Add(poolFastRefresh)
			block = true
		}
	}
	g.mu.Unlock()
	g.opts.Logger.Debug("stores refused by a site that does not lead their shard; rerouted", "site", site.addr, "stores", len(moved))
	if block {
		time.AfterFunc(poolFastRefresh, g.wakeAll)
	}
	g.wakeAll()
}

// resendSent puts the Stores sent to site on a stream that ended back
// into the queue, in their order, to be sent on the next stream (to the
// shard's leader then).
func (g *Ingest) resendSent(site *ingestSite) {
	g.mu.Lock()
	var again []*ingestStore
	for _, s := range g.mu.sent {
		if s.site == site.addr {
			again = append(again, s)
		}
	}
	for _, s := range again {
		g.unsendLocked(s)
	}
	g.requeueLocked(again)
	g.mu.Unlock()
	if g.pool != nil && len(again) > 0 {
		g.wakeAll()
	}
}

// expire fails the Stores whose deadline passed.
func (g *Ingest) expire(now time.Time) {
	var late []*ingestStore
	g.mu.Lock()
	for _, s := range g.mu.sent {
		if now.After(s.deadline) {
			late = append(late, s)
		}
	}
	for _, s := range late {
		g.unsendLocked(s)
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
	clear(g.mu.inflight)
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
