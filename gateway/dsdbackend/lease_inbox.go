package dsdbackend

import (
	"context"
	"sync"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// inbox hands a link's responses, other than heartbeat acknowledgements,
// from the link's reader to its dispatcher, in order. The reader so never
// waits for the sessions' work: a pushed batch is numbered, written and
// committed by the sessions it is for, and with a thousand subscribers in a
// connect storm that work fell seconds behind the link. A heartbeat's
// acknowledgement then waited behind it in the stream, and the lease ran
// out (2 intervals) although dsd had every heartbeat: the gateway closed
// every connection (benchcmp fanout1k, about one run in three).
//
// The queue is unbounded, but what dsd pushes is: each Read entry has its
// window of messages unacknowledged, and the sessions acknowledge only what
// they took.
type inbox struct {
	mu   sync.Mutex
	q    []*dsdv1.GatewayLinkResponse
	wake chan struct{}
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

// put queues resp for the dispatcher.
func (b *inbox) put(resp *dsdv1.GatewayLinkResponse) {
	b.mu.Lock()
	b.q = append(b.q, resp)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take waits for queued responses and returns them all, handing spare (the
// previous slice, done with) back as the next queue; nil once ctx is done.
func (b *inbox) take(ctx context.Context, spare []*dsdv1.GatewayLinkResponse) []*dsdv1.GatewayLinkResponse {
	for {
		b.mu.Lock()
		if len(b.q) > 0 {
			got := b.q
			clear(spare)
			b.q = spare[:0]
			b.mu.Unlock()
			return got
		}
		b.mu.Unlock()
		select {
		case <-b.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// dispatch hands the queued responses to the router (pushed batches, entry
// answers) and kicks to h, in the order they came, until ctx is done.
func (l *Lease) dispatch(ctx context.Context, site string, b *inbox, h Handlers) {
	var spare []*dsdv1.GatewayLinkResponse
	for {
		got := b.take(ctx, spare)
		if got == nil {
			return
		}
		for _, resp := range got {
			if l.opts.Router != nil && l.opts.Router.dispatch(site, resp) {
				continue
			}
			if k := resp.GetKick(); k != nil {
				l.log.Debug("session kick", "client_id", k.GetClientId(), "guard", k.GetGuard(), "reason", k.GetReason())
				h.Kick(k.GetClientId(), k.GetGuard())
			}
		}
		spare = got
	}
}
