package server

import (
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// linkControl is a link's queue of control responses (kicks and the errors
// of the entries a revoked guard removed). It is filled by storage's
// GuardRevoked callback, which must not block, and drained by the send
// loop; it is unbounded, but holds at most one kick per session the gateway
// owned plus one error per removed entry.
type linkControl struct {
	wake chan struct{} // poked (without blocking) when q grows
	mu   struct {
		sync.Mutex
		q []*dsdv1.GatewayLinkResponse
	}
}

func (c *linkControl) push(rs ...*dsdv1.GatewayLinkResponse) {
	if len(rs) == 0 {
		return
	}
	c.mu.Lock()
	c.mu.q = append(c.mu.q, rs...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *linkControl) take() []*dsdv1.GatewayLinkResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.mu.q
	c.mu.q = nil
	return q
}

// checkSessionLocked refuses an entry tied to a guard that is not its
// session's current one. Called with l.mu held, in the same critical
// section that adds the entry to l.mu.entries: a revocation applied before
// the check is seen here (storage updates the guard at apply, before the
// commit that announces it), and one applied after it is announced after
// the entry is in the map, where guardRevoked finds it.
func (l *link) checkSessionLocked(ref *dsdv1.SessionRef) error {
	if ref == nil {
		return nil
	}
	return l.s.db.CheckSessionGuard(ref.GetClientId(), ref.GetGuard())
}

// guardRevoked is the link's storage.GuardRevoked callback: it removes the
// entries tied to the revoked (client id, guard), and kicks the connection
// if this link's gateway epoch owned it while connected. It never blocks.
func (l *link) guardRevoked(ev storage.GuardRevoked) {
	l.mu.Lock()
	removed := slices.Clone(l.mu.bySession[sessionKey{ev.ClientID, ev.Guard}])
	for _, e := range removed {
		l.deleteLocked(e)
	}
	l.mu.Unlock()
	var out []*dsdv1.GatewayLinkResponse
	if ev.Connected && ev.GatewayID == l.gatewayID && ev.GatewayEpoch == l.epoch {
		out = append(out, &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Kick{Kick: &dsdv1.SessionKick{
			ClientId: ev.ClientID, Guard: ev.Guard, Reason: string(ev.Reason),
		}}})
	}
	if len(removed) > 0 {
		st, _ := status.FromError(statusFor(fmt.Errorf("%w: session %q guard %d: %s", storage.ErrStaleGuard, ev.ClientID, ev.Guard, ev.Reason)))
		for _, e := range removed {
			e.cancel()
			out = append(out, &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Error{Error: &dsdv1.EntryError{
				EntryId: e.id, Code: uint32(st.Code()), Message: st.Message(), EntryEnded: true,
			}}})
		}
	}
	l.ctl.push(out...)
}
