package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/status"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Per-entry errors of the link (statusFor maps them).
var (
	// errUnknownEntry: an ack names an entry id never used on the stream.
	errUnknownEntry = errors.New("dsd: unknown entry")
	// errEntryIDReused: an entry id already used on the stream.
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
	// ctl feeds the send loop with kicks (session_link.go).
	ctl linkControl

	mu struct {
		sync.Mutex
		// closed refuses new entries once the stream is ending.
		closed  bool
		entries map[uint64]*linkEntry
		// used holds every entry id seen on the stream, live or ended, so
		// that a reused id is refused and a late ack of an ended entry is
		// ignored. It grows by one id per entry for the stream's lifetime.
		used map[uint64]struct{}
	}
}

// linkEntry is one live Watch or Read entry. Its worker goroutine owns
// everything but the window, which acks change.
type linkEntry struct {
	id     uint64
	cancel context.CancelFunc
	// session, when set, ties the entry to a session guard (session_link.go).
	session *dsdv1.SessionRef
	// wake is poked (without blocking) when an ack frees window.
	wake chan struct{}

	mu struct {
		sync.Mutex
		// unacked maps a pushed batch's seq to its message count.
		unacked map[uint64]int
		// inflight is the sum of unacked.
		inflight int
	}
}

func newLink(s *gatewayLinkService, ctx context.Context, g *errgroup.Group) *link {
	l := &link{s: s, ctx: ctx, g: g, out: make(chan *dsdv1.GatewayLinkResponse, linkOutboundQueue)}
	l.ctl.wake = make(chan struct{}, 1)
	l.mu.entries = make(map[uint64]*linkEntry)
	l.mu.used = make(map[uint64]struct{})
	return l
}

// refuseNewWork closes the link to new entries. The end watcher calls it
// before it returns, so the errgroup never gets a Go after its Wait can
// have returned.
func (l *link) refuseNewWork() {
	l.mu.Lock()
	l.mu.closed = true
	l.mu.Unlock()
}

// start registers a new entry and runs work in the link's errgroup. A
// refused id is reported as an error event.
func (l *link) start(id uint64, ref *dsdv1.SessionRef, work func(ctx context.Context, e *linkEntry)) {
	if ended, err := l.startOrRefuse(id, ref, work); err != nil {
		l.sendError(id, err, ended)
	}
}

func (l *link) startOrRefuse(id uint64, ref *dsdv1.SessionRef, work func(ctx context.Context, e *linkEntry)) (ended bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return false, nil
	}
	if ended, err := l.claimLocked(id); err != nil {
		return ended, err
	}
	if err := l.checkSessionLocked(ref); err != nil {
		return true, err
	}
	if limit := l.s.opts.MaxEntries; len(l.mu.entries) >= limit {
		l.s.metrics.linkEntriesRefused.Inc()
		return true, fmt.Errorf("%w: entry %d refused: the link holds %d live Watch and Read entries, the limit (durable_sessions.max_link_entries = %d)", errLinkEntryLimit, id, len(l.mu.entries), limit)
	}
	ctx, cancel := context.WithCancel(l.ctx)
	e := &linkEntry{id: id, cancel: cancel, wake: make(chan struct{}, 1), session: ref}
	e.mu.unacked = make(map[uint64]int)
	l.mu.entries[id] = e
	l.s.entries.Add(1)
	l.g.Go(func() error {
		defer l.s.entries.Add(-1)
		defer l.forget(e)
		defer cancel()
		defer l.recoverEntry(e)
		work(ctx, e)
		return nil
	})
	return false, nil
}

// recoverEntry is the panic boundary of an entry's worker: the entry ends
// with INTERNAL (the stack is logged and counted), the link goes on.
func (l *link) recoverEntry(e *linkEntry) {
	r := recover()
	if r == nil {
		return
	}
	l.s.metrics.panics.WithLabelValues("GatewayLink/entry").Inc()
	l.s.log.Error("panic in a gateway link entry; the entry ends with INTERNAL", "gateway", l.gatewayID, "entry", e.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	if l.ctx.Err() == nil {
		l.endEntry(e, fmt.Errorf("%w: entry %d: %v", errPanic, e.id, r))
	}
}

// claimLocked marks id used, or says why it cannot be (and whether an
// entry with that id is gone).
func (l *link) claimLocked(id uint64) (ended bool, err error) {
	if _, ok := l.mu.used[id]; ok {
		_, live := l.mu.entries[id]
		return !live, fmt.Errorf("%w: %d", errEntryIDReused, id)
	}
	l.mu.used[id] = struct{}{}
	return false, nil
}

// forget removes an ended entry from the live set.
func (l *link) forget(e *linkEntry) {
	l.mu.Lock()
	if l.mu.entries[e.id] == e {
		delete(l.mu.entries, e.id)
	}
	l.mu.Unlock()
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
	delete(l.mu.entries, id)
	_, used := l.mu.used[id]
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
	_, used := l.mu.used[id]
	l.mu.Unlock()
	switch {
	case e != nil:
		if !e.release(a.GetBatchSeq()) {
			l.sendError(id, fmt.Errorf("%w: entry %d has no unacked batch %d", errInvalidRequest, id, a.GetBatchSeq()), false)
		}
	case !used:
		l.sendError(id, fmt.Errorf("%w: ack of entry %d", errUnknownEntry, id), true)
	}
}

// pushed records a batch about to be sent.
func (e *linkEntry) pushed(seq uint64, n int) {
	e.mu.Lock()
	e.mu.unacked[seq] = n
	e.mu.inflight += n
	e.mu.Unlock()
}

// release frees the window of one batch and wakes the worker; false when
// the batch is not unacked.
func (e *linkEntry) release(seq uint64) bool {
	e.mu.Lock()
	n, ok := e.mu.unacked[seq]
	if ok {
		delete(e.mu.unacked, seq)
		e.mu.inflight -= n
	}
	e.mu.Unlock()
	if ok {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	return ok
}

func (e *linkEntry) inflight() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.inflight
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
