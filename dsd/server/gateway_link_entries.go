package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Per-entry errors of the link (statusFor maps them).
var (
	// errUnknownEntry: an ack or remove names an entry id above every id
	// used on the stream.
	errUnknownEntry = errors.New("dsd: unknown entry")
	// errEntryIDReused: an entry id not above the highest one used on the
	// stream (ids are strictly increasing).
	errEntryIDReused = errors.New("dsd: entry id reused")
)

// link is the state of one GatewayLink stream.
type link struct {
	s   *gatewayLinkService
	ctx context.Context // the errgroup's: done when the stream ends
	g   *errgroup.Group
	// out feeds the send loop.
	out chan *dsdv1.GatewayLinkResponse
	// gatewayID and epoch are the hello's: kicks for that owner come here.
	gatewayID string
	epoch     uint64
	// storedValues is the hello's: the gateway takes messages in their
	// stored encoding (StoredMessage.value), so batches carry them as read.
	storedValues bool
	// ctl feeds the send loop with kicks (session_link.go).
	ctl linkControl
	// sched runs the entries (gateway_link_sched.go).
	sched *scheduler

	mu struct {
		sync.Mutex
		// closed refuses new entries once the stream is ending.
		closed  bool
		entries map[uint64]*linkEntry
		// bySession indexes the live entries tied to a session guard, so a
		// revoked guard finds its entries without a scan of all entries.
		bySession map[sessionKey][]*linkEntry
		// maxID is the highest entry id used on the stream (any: one was).
		// Ids are strictly increasing, so an id at or below it is reused
		// (or the late ack of an ended entry) and one above it is new:
		// O(1) memory however many entries the stream had.
		maxID uint64
		anyID bool
	}
}

// linkEntry is one live Watch or Read entry: a struct in the link's
// indexes, run by the link's scheduler. Exactly one of read and watch is
// set.
type linkEntry struct {
	id uint64
	l  *link
	// session, when set, ties the entry to a session guard (session_link.go).
	session *dsdv1.SessionRef
	read    *readEntry
	watch   *watchEntry

	// Guarded by l.sched.mu.
	state      entryState
	dirty      bool       // woken while running
	wokeAt     uint64     // scheduler.wakes when last queued
	prev, next *linkEntry // the scheduler's index list
}

func newLink(s *gatewayLinkService, ctx context.Context, g *errgroup.Group) *link {
	l := &link{s: s, ctx: ctx, g: g, out: make(chan *dsdv1.GatewayLinkResponse, linkOutboundQueue), sched: newScheduler(s.metrics)}
	l.ctl.wake = make(chan struct{}, 1)
	l.mu.entries = make(map[uint64]*linkEntry)
	l.mu.bySession = make(map[sessionKey][]*linkEntry)
	return l
}

// sessionKey names a session guard.
type sessionKey struct {
	clientID string
	guard    uint64
}

// insertLocked makes e live.
func (l *link) insertLocked(e *linkEntry) {
	l.mu.entries[e.id] = e
	if ref := e.session; ref != nil {
		k := sessionKey{ref.GetClientId(), ref.GetGuard()}
		l.mu.bySession[k] = append(l.mu.bySession[k], e)
	}
}

// deleteLocked takes e out of the live set; false when it was not in it.
func (l *link) deleteLocked(e *linkEntry) bool {
	if e == nil || l.mu.entries[e.id] != e {
		return false
	}
	delete(l.mu.entries, e.id)
	if ref := e.session; ref != nil {
		k := sessionKey{ref.GetClientId(), ref.GetGuard()}
		es := l.mu.bySession[k]
		for i, x := range es {
			if x == e {
				es = append(es[:i], es[i+1:]...)
				break
			}
		}
		if len(es) == 0 {
			delete(l.mu.bySession, k)
		} else {
			l.mu.bySession[k] = es
		}
	}
	return true
}

// refuseNewWork closes the link to new entries. The end watcher calls it
// before it returns.
func (l *link) refuseNewWork() {
	l.mu.Lock()
	l.mu.closed = true
	l.mu.Unlock()
}

// endAll ends every live entry once the link's goroutines have stopped.
func (l *link) endAll() {
	l.mu.Lock()
	entries := l.mu.entries
	l.mu.entries = map[uint64]*linkEntry{}
	clear(l.mu.bySession)
	l.mu.Unlock()
	var downs []storage.SharedDown
	for _, e := range entries {
		if e.read != nil && e.read.shared != nil {
			sr := e.read.shared
			downs = append(downs, storage.SharedDown{Member: sr.member, Guard: sr.guard, KeepQoS2: true})
		}
		e.cancel()
	}
	l.sched.close()
	// The members' grants go back now, unless dsd is the one stopping (the
	// gateway then opens its link again and carries on).
	select {
	case <-l.s.stopping:
	default:
		l.s.db.SharedMembersDownLater(downs)
	}
}

// start registers a new entry and queues it. A refused id is reported as
// an error event.
func (l *link) start(e *linkEntry) {
	if ended, err := l.startOrRefuse(e); err != nil {
		l.sendError(e.id, err, ended)
	}
}

func (l *link) startOrRefuse(e *linkEntry) (ended bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return false, nil
	}
	if ended, err := l.claimLocked(e.id); err != nil {
		return ended, err
	}
	if err := l.checkSessionLocked(e.session); err != nil {
		return true, err
	}
	if limit := l.s.opts.MaxEntries; len(l.mu.entries) >= limit {
		l.s.metrics.linkEntriesRefused.Inc()
		return true, fmt.Errorf("%w: entry %d refused: the link holds %d live Watch and Read entries, the limit (durable_sessions.max_link_entries = %d)", errLinkEntryLimit, e.id, len(l.mu.entries), limit)
	}
	e.l = l
	l.insertLocked(e)
	l.s.entries.Add(1)
	l.sched.add(e)
	return false, nil
}

// claimLocked marks id used, or says why it cannot be (and whether an
// entry with that id is gone).
func (l *link) claimLocked(id uint64) (ended bool, err error) {
	if l.usedLocked(id) {
		_, live := l.mu.entries[id]
		return !live, fmt.Errorf("%w: %d (ids must increase: the highest used is %d)", errEntryIDReused, id, l.mu.maxID)
	}
	l.mu.maxID, l.mu.anyID = id, true
	return false, nil
}

func (l *link) usedLocked(id uint64) bool { return l.mu.anyID && id <= l.mu.maxID }

// cancel takes the entry out of the scheduler: it is never run again (a
// step under way finishes). The caller removed it from link.mu.entries.
func (e *linkEntry) cancel() {
	if e.l.sched.end(e) {
		e.l.s.entries.Add(-1)
		if e.read != nil && e.read.shared != nil {
			e.l.s.groups.leave(e)
		}
	}
}

// forget removes an ended entry from the live set and the scheduler.
func (l *link) forget(e *linkEntry) {
	l.mu.Lock()
	l.deleteLocked(e)
	l.mu.Unlock()
	e.cancel()
}

// refuse reports a request that could not start an entry; the id counts as
// used.
func (l *link) refuse(id uint64, err error) {
	l.mu.Lock()
	ended, claimErr := l.claimLocked(id)
	l.mu.Unlock()
	if claimErr != nil {
		l.sendError(id, claimErr, ended)
		return
	}
	l.sendError(id, err, true)
}

// remove ends an entry. Removing an ended entry is a no-op; an id never
// used is reported.
func (l *link) remove(id uint64) {
	l.mu.Lock()
	e := l.mu.entries[id]
	l.deleteLocked(e)
	used := l.usedLocked(id)
	l.mu.Unlock()
	if e != nil {
		e.cancel()
	}
	if !used {
		l.sendError(id, fmt.Errorf("%w: remove %d", errUnknownEntry, id), true)
	}
}

// ack releases the window of one batch of a Read entry. A late ack of an
// ended entry is ignored.
func (l *link) ack(a *dsdv1.BatchAck) {
	id := a.GetEntryId()
	l.mu.Lock()
	e := l.mu.entries[id]
	used := l.usedLocked(id)
	l.mu.Unlock()
	switch {
	case e != nil && e.read != nil:
		if !l.release(e, a.GetBatchSeq()) {
			l.sendError(id, fmt.Errorf("%w: entry %d has no unacked batch %d", errInvalidRequest, id, a.GetBatchSeq()), false)
		}
	case e != nil: // a Watch entry has no batches
		l.sendError(id, fmt.Errorf("%w: entry %d has no unacked batch %d", errInvalidRequest, id, a.GetBatchSeq()), false)
	case !used:
		l.sendError(id, fmt.Errorf("%w: ack of entry %d", errUnknownEntry, id), true)
	}
}

// pushed records a batch about to be sent.
func (l *link) pushed(e *linkEntry, seq uint64, n int) {
	l.sched.mu.Lock()
	e.read.unacked = append(e.read.unacked, unackedBatch{seq: seq, n: n})
	e.read.inflight += n
	if b := e.read.budget; b != nil {
		b.inflight += n
	}
	l.sched.mu.Unlock()
}

// release frees the window of one batch and wakes the entry; false when
// the batch is not unacked.
func (l *link) release(e *linkEntry, seq uint64) bool {
	l.sched.mu.Lock()
	defer l.sched.mu.Unlock()
	r := e.read
	for i, b := range r.unacked {
		if b.seq == seq {
			r.unacked = append(r.unacked[:i], r.unacked[i+1:]...)
			if len(r.unacked) == 0 {
				r.unacked = nil // an idle entry holds no array
			}
			r.inflight -= b.n
			l.sched.wakeLocked(e)
			if mb := r.budget; mb != nil {
				mb.inflight -= b.n
				for _, o := range mb.entries {
					l.sched.wakeLocked(o) // the member's window has room again
				}
			}
			return true
		}
	}
	return false
}

// roomAndWakes is the window e has left, with the scheduler's wake-up count
// at that moment (shareRead).
func (l *link) roomAndWakes(e *linkEntry) (int, uint64) {
	l.sched.mu.Lock()
	defer l.sched.mu.Unlock()
	room := e.read.window - e.read.inflight
	if b := e.read.budget; b != nil {
		room = min(room, e.read.window-b.inflight)
	}
	return room, l.sched.wakes
}

// send queues a response for the send loop; false when ctx ended first.
func (l *link) send(ctx context.Context, resp *dsdv1.GatewayLinkResponse) bool {
	select {
	case l.out <- resp:
		return true
	case <-ctx.Done():
		return false
	}
}

// endEntry ends a running entry with an error event. The entry leaves the
// live set before the event is queued, so a gateway that reacts to the event
// (say, by reusing the id) already sees the entry as ended.
func (l *link) endEntry(e *linkEntry, err error) {
	l.forget(e)
	l.sendError(e.id, err, true)
}

// sendError queues an error event. err goes through statusFor, the one
// error→status table; the detail of an INTERNAL one is logged here.
func (l *link) sendError(id uint64, err error, ended bool) {
	serr := statusFor(err)
	var ie *internalError
	if errors.As(serr, &ie) {
		l.s.metrics.internalErrors.WithLabelValues("GatewayLink/entry").Inc()
		l.s.log.Error("internal error", "gateway", l.gatewayID, "entry", id, "incident", ie.id, "err", ie.err)
	}
	st, _ := status.FromError(serr)
	l.send(l.ctx, &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Error{Error: &dsdv1.EntryError{
		EntryId: id, Code: uint32(st.Code()), Message: st.Message(), EntryEnded: ended,
	}}})
}
