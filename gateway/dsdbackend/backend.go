package dsdbackend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Registrar is what the Backend needs of the gateway's registration with
// dsd (a *Lease).
type Registrar interface {
	// Current returns the registered gateway id and epoch, and a channel
	// closed when that registration ends (lease lost, gateway closing). It
	// fails, wrapping session.ErrUnavailable, while no lease is held or the
	// link is down: dsd could not tell the gateway about a takeover.
	Current() (Registration, error)
	// Held returns the registration while its lease is held, also while
	// its link is being reopened: a connection's end can still be
	// reported with its guard.
	Held() (Registration, error)
}

// Registration is one registered gateway epoch.
type Registration struct {
	GatewayID string
	Epoch     uint64
	// Ended is cancelled when the registration ends.
	Ended context.Context
}

// Options configure a Backend.
type Options struct {
	// AllowCrossIdentityTakeover lets another user name take a client id's
	// session over (mqtt.allow_cross_identity_takeover).
	AllowCrossIdentityTakeover bool
	// CallTimeout bounds each call to dsd, within the caller's deadline;
	// a call that times out is ErrUnavailable (CONNACK 0x88). Default 4 s
	// (DefaultCallTimeout: two default heartbeat intervals).
	CallTimeout time.Duration
}

// Backend is a session.Backend over dsd's SessionService. It is safe for
// concurrent use.
type Backend struct {
	// sessions is the SessionService of the leader of a client id's shard.
	sessions func(clientID string) dsdv1.SessionServiceClient
	// pool, when set, routes the calls (NewRouted); a refusal naming
	// another leader is retried there.
	pool *Pool
	reg  Registrar
	opts Options
}

var _ session.Backend = (*Backend)(nil)

// New returns a Backend that opens sessions through sessions under the
// registrations of reg. opts must pass Validate after EnsureDefaults.
func New(sessions dsdv1.SessionServiceClient, reg Registrar, opts Options) *Backend {
	opts.EnsureDefaults()
	mustBeValid(opts.Validate())
	return &Backend{sessions: func(string) dsdv1.SessionServiceClient { return sessions }, reg: reg, opts: opts}
}

// NewRouted returns a Backend whose calls go to the leader of each
// session's shard, as pool knows it.
func NewRouted(pool *Pool, reg Registrar, opts Options) *Backend {
	opts.EnsureDefaults()
	mustBeValid(opts.Validate())
	return &Backend{sessions: func(id string) dsdv1.SessionServiceClient { return pool.ForClient(id).Sessions() }, pool: pool, reg: reg, opts: opts}
}

// maxFastReroutes bounds the retries in a row that follow a refusal naming
// the leader without a pause (two sites that name each other while a
// leadership change settles).
const maxFastReroutes = 3

// rerouted reports whether err is a refusal of a site that does not lead
// the call's shard, and tells the pool (which updates its table or asks
// for a refresh): the call then goes again, at once when the refusal
// named the leader (now), else after a pause.
func (b *Backend) rerouted(err error) (retry, now bool) {
	if b.pool == nil || err == nil {
		return false, false
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false, false
	}
	if _, ok := ParseRefusal(st.Message()); !ok {
		return false, false
	}
	return true, b.pool.ObserveMessage(st.Message())
}

// call runs f with ctx bounded by the call timeout and cancelled when the
// registration ends, so that a lease lost mid-call answers at once.
func (b *Backend) call(ctx context.Context, r Registration, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, b.opts.CallTimeout)
	defer cancel()
	stop := context.AfterFunc(r.Ended, cancel)
	defer stop()
	return f(cctx)
}

// retry runs an idempotent call until it succeeds, fails for another
// reason than dsd being unreachable (by translate), ctx ends or the lease
// ends: a dsd restart then delays the call instead of failing it.
func (b *Backend) retry(ctx context.Context, r Registration, op string, translate func(context.Context, string, error) error, f func(ctx context.Context) error) error {
	bo := newBackoff(b.opts.CallTimeout / 4)
	for fast := 0; ; {
		raw := b.call(ctx, r, f)
		if _, now := b.rerouted(raw); now && fast < maxFastReroutes && ctx.Err() == nil && r.Ended.Err() == nil {
			fast++
			continue // the leader is named: go there at once
		}
		fast = 0
		err := translate(ctx, op, raw)
		if !errors.Is(err, session.ErrUnavailable) {
			return err
		}
		t := time.NewTimer(bo.next())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-r.Ended.Done():
			t.Stop()
			return err
		}
	}
}

// callRouted is call for a call that is not retried otherwise
// (OpenSession, a replay): a refusal of a site that does not lead the
// call's shard is retried on the leader (a refused call did not happen),
// within the call timeout; any other error is the caller's.
func (b *Backend) callRouted(ctx context.Context, r Registration, f func(ctx context.Context) error) error {
	if b.pool == nil {
		return b.call(ctx, r, f)
	}
	deadline := time.Now().Add(b.opts.CallTimeout)
	bo := newBackoff(b.opts.CallTimeout / 4)
	for fast := 0; ; {
		err := b.call(ctx, r, f)
		retry, now := b.rerouted(err)
		if !retry || ctx.Err() != nil || r.Ended.Err() != nil {
			return err
		}
		if now && fast < maxFastReroutes {
			fast++
			continue
		}
		fast = 0
		d := bo.next()
		if time.Until(deadline) < d {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-r.Ended.Done():
			t.Stop()
			return err
		}
	}
}

// Open implements session.Backend: OpenSession under the current epoch.
func (b *Backend) Open(ctx context.Context, req session.OpenRequest) (session.OpenResult, error) {
	r, err := b.reg.Current()
	if err != nil {
		return session.OpenResult{}, sessionError(ctx, "open", err)
	}
	in := &dsdv1.OpenSessionRequest{
		ClientId:                   req.ClientID,
		Username:                   req.Username,
		ProtocolVersion:            uint32(req.Version),
		CleanStart:                 req.CleanStart,
		ExpiryIntervalS:            req.Expiry,
		Will:                       willToProto(req.Will),
		GatewayId:                  r.GatewayID,
		GatewayEpoch:               r.Epoch,
		AllowCrossIdentityTakeover: b.opts.AllowCrossIdentityTakeover,
	}
	var out *dsdv1.OpenSessionResponse
	err = b.callRouted(ctx, r, func(ctx context.Context) (err error) {
		out, err = b.sessions(in.ClientId).OpenSession(ctx, in)
		return err
	})
	if err != nil {
		return session.OpenResult{}, sessionError(ctx, "open", err)
	}
	if r.Ended.Err() != nil {
		// The lease was lost while opening: the session belongs to a dead
		// epoch, and this gateway is closing every connection. dsd ends
		// the session with the epoch.
		return session.OpenResult{}, sessionError(ctx, "open", fmt.Errorf("%w: %w: epoch %d ended", session.ErrUnavailable, errNotRegistered, r.Epoch))
	}
	res := session.OpenResult{SessionPresent: out.GetSessionPresent(), Guard: out.GetGuard(), Watermarks: out.GetWatermarksUs()}
	if res.SessionPresent {
		res.Session = out.GetSession()
	}
	return res, nil
}

// Disconnect implements session.Backend: Disconnect with the guard. The end
// is abnormal (the will stays armed) for every reason but a client's
// DISCONNECT without a will to publish; the expiry in force is always sent
// (dsd refuses only raising a CONNECT's 0, which the machine refuses first).
// A connection kicked by a takeover is not reported: its guard is stale.
func (b *Backend) Disconnect(ctx context.Context, req session.DisconnectRequest) error {
	if req.Reason == session.ReasonTakenOver {
		return fmt.Errorf("dsdbackend: disconnect: %w: taken over", session.ErrStaleGuard)
	}
	r, err := b.reg.Held()
	if err != nil {
		// No lease: dsd ends the epoch's sessions when it declares the
		// epoch dead, as abnormal ends.
		return sessionError(ctx, "disconnect", err)
	}
	expiry := req.Expiry
	in := &dsdv1.DisconnectRequest{
		ClientId:        req.ClientID,
		Guard:           req.Guard,
		Abnormal:        req.Will || req.Reason != session.ReasonClientDisconnect,
		ExpiryIntervalS: &expiry,
	}
	// While the lease is held, dsd counts the session as connected to
	// this epoch until told otherwise, so an unreachable dsd is retried
	// until the caller gives up or the lease ends.
	return b.retry(ctx, r, "disconnect", sessionError, func(ctx context.Context) error {
		_, err := b.sessions(in.ClientId).Disconnect(ctx, in)
		return err
	})
}

// willToProto converts a CONNECT's will for OpenSession.
func willToProto(w *session.Will) *storagev1.Will {
	if w == nil {
		return nil
	}
	return &storagev1.Will{
		Message: &storagev1.Message{
			Topic:      w.Topic,
			Payload:    w.Payload,
			Qos:        uint32(w.QoS),
			Retain:     w.Retain,
			Properties: propertiesToProto(&w.Properties),
		},
		DelayIntervalS: w.Delay,
	}
}

// propertiesToProto keeps the publication properties that travel with a
// message; nil when there are none.
func propertiesToProto(p *packet.Properties) *storagev1.MessageProperties {
	if p.Empty() {
		return nil
	}
	out := &storagev1.MessageProperties{}
	if p.Present.Has(packet.PropContentType) {
		out.ContentType = p.ContentType
	}
	if p.Present.Has(packet.PropResponseTopic) {
		out.ResponseTopic = p.ResponseTopic
	}
	if p.Present.Has(packet.PropCorrelationData) {
		out.CorrelationData = p.CorrelationData
	}
	if p.Present.Has(packet.PropPayloadFormatIndicator) {
		v := uint32(p.PayloadFormatIndicator)
		out.PayloadFormat = &v
	}
	if p.Present.Has(packet.PropMessageExpiryInterval) {
		v := p.MessageExpiryInterval
		out.MessageExpiryInterval = &v
	}
	for _, u := range p.UserProperties {
		out.UserProperties = append(out.UserProperties, &storagev1.UserProperty{Key: u.Key, Value: u.Value})
	}
	return out
}
