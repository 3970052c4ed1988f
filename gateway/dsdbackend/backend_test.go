package dsdbackend

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// fakeSessions records OpenSession and Disconnect requests and answers
// with open/disconnect.
type fakeSessions struct {
	dsdv1.SessionServiceClient
	mu         sync.Mutex
	opens      []*dsdv1.OpenSessionRequest
	disconnect []*dsdv1.DisconnectRequest
	open       func(ctx context.Context) (*dsdv1.OpenSessionResponse, error)
	// failDisconnects is how many Disconnects fail with UNAVAILABLE first.
	failDisconnects int
}

func (f *fakeSessions) OpenSession(ctx context.Context, in *dsdv1.OpenSessionRequest, _ ...grpc.CallOption) (*dsdv1.OpenSessionResponse, error) {
	f.mu.Lock()
	f.opens = append(f.opens, in)
	f.mu.Unlock()
	return f.open(ctx)
}

func (f *fakeSessions) Disconnect(ctx context.Context, in *dsdv1.DisconnectRequest, _ ...grpc.CallOption) (*dsdv1.DisconnectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnect = append(f.disconnect, in)
	if f.failDisconnects > 0 {
		f.failDisconnects--
		return nil, status.Error(codes.Unavailable, "dsd restarting")
	}
	return &dsdv1.DisconnectResponse{}, nil
}

type fixedRegistrar struct {
	reg Registration
	err error
}

func (r fixedRegistrar) Current() (Registration, error) { return r.reg, r.err }
func (r fixedRegistrar) Held() (Registration, error)    { return r.reg, r.err }

func TestBackendOpen(t *testing.T) {
	f := &fakeSessions{open: func(context.Context) (*dsdv1.OpenSessionResponse, error) {
		return &dsdv1.OpenSessionResponse{SessionPresent: true, Guard: 42}, nil
	}}
	reg := fixedRegistrar{reg: Registration{GatewayID: "gw-a", Epoch: 7, Ended: context.Background()}}
	b := New(f, reg, Options{AllowCrossIdentityTakeover: true})
	will := &session.Will{Topic: "w/t", Payload: []byte("bye"), QoS: 1, Retain: true, Delay: 5}
	will.Properties.Present.Add(packet.PropContentType)
	will.Properties.ContentType = "text/plain"
	will.Properties.UserProperties = []packet.UserProperty{{Key: "k", Value: "v"}}
	res, err := b.Open(context.Background(), session.OpenRequest{
		ClientID: "c1", Username: "alice", Version: packet.V5, Expiry: 300, Will: will,
	})
	if err != nil || !res.SessionPresent || res.Guard != 42 {
		t.Fatalf("Open = %+v, %v", res, err)
	}
	in := f.opens[0]
	if in.GetClientId() != "c1" || in.GetUsername() != "alice" || in.GetProtocolVersion() != 5 || in.GetCleanStart() ||
		in.GetExpiryIntervalS() != 300 || in.GetGatewayId() != "gw-a" || in.GetGatewayEpoch() != 7 || !in.GetAllowCrossIdentityTakeover() {
		t.Fatalf("OpenSession request %v", in)
	}
	w := in.GetWill()
	if w.GetDelayIntervalS() != 5 || w.GetMessage().GetTopic() != "w/t" || string(w.GetMessage().GetPayload()) != "bye" ||
		w.GetMessage().GetQos() != 1 || !w.GetMessage().GetRetain() || w.GetMessage().GetProperties().GetContentType() != "text/plain" ||
		len(w.GetMessage().GetProperties().GetUserProperties()) != 1 || w.GetMessage().GetProperties().PayloadFormat != nil {
		t.Fatalf("will %v", w)
	}
}

func TestBackendOpenRefused(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		want error
	}{
		{codes.PermissionDenied, session.ErrIdentityMismatch},
		{codes.Unavailable, session.ErrUnavailable},
		{codes.DeadlineExceeded, session.ErrUnavailable},
		{codes.ResourceExhausted, session.ErrQuotaExceeded}, // dsd's disk is full
	} {
		f := &fakeSessions{open: func(context.Context) (*dsdv1.OpenSessionResponse, error) {
			return nil, status.Error(tc.code, "refused")
		}}
		b := New(f, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: context.Background()}}, Options{})
		if _, err := b.Open(context.Background(), session.OpenRequest{ClientID: "c"}); !errors.Is(err, tc.want) {
			t.Errorf("%v: Open error %v, want %v", tc.code, err, tc.want)
		}
	}
}

// Without a registration nothing is opened: dsd could not kick.
func TestBackendOpenNotRegistered(t *testing.T) {
	f := &fakeSessions{}
	b := New(f, fixedRegistrar{err: errors.Join(session.ErrUnavailable, errNotRegistered)}, Options{})
	if _, err := b.Open(context.Background(), session.OpenRequest{ClientID: "c"}); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Open error %v, want ErrUnavailable", err)
	}
	if err := b.Disconnect(context.Background(), session.DisconnectRequest{ClientID: "c", Guard: 1}); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Disconnect error %v, want ErrUnavailable", err)
	}
	if len(f.opens)+len(f.disconnect) != 0 {
		t.Fatal("dsd was called without a registration")
	}
}

// A lease lost during OpenSession cancels the call: CONNACK 0x88 at once,
// not after the call timeout.
func TestBackendOpenLeaseLostMidCall(t *testing.T) {
	ended, end := context.WithCancel(context.Background())
	f := &fakeSessions{open: func(ctx context.Context) (*dsdv1.OpenSessionResponse, error) {
		end()
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	b := New(f, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: ended}}, Options{CallTimeout: time.Hour})
	if _, err := b.Open(context.Background(), session.OpenRequest{ClientID: "c"}); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Open error %v, want ErrUnavailable", err)
	}
	// An answer that arrives after the lease ended is not used either.
	ended, end = context.WithCancel(context.Background())
	f.open = func(context.Context) (*dsdv1.OpenSessionResponse, error) {
		end()
		return &dsdv1.OpenSessionResponse{Guard: 9}, nil
	}
	b = New(f, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: ended}}, Options{})
	if _, err := b.Open(context.Background(), session.OpenRequest{ClientID: "c"}); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Open error %v, want ErrUnavailable", err)
	}
}

func TestBackendDisconnect(t *testing.T) {
	f := &fakeSessions{}
	b := New(f, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: context.Background()}}, Options{})
	for _, req := range []session.DisconnectRequest{
		{ClientID: "normal", Guard: 1, Expiry: 60, Reason: session.ReasonClientDisconnect},
		{ClientID: "v5-0x04", Guard: 2, Will: true, Expiry: 0, Reason: session.ReasonClientDisconnect},
		{ClientID: "keepalive", Guard: 3, Reason: session.ReasonKeepAliveTimeout},
		{ClientID: "kicked", Guard: 4, Will: true, Reason: session.ReasonTakenOver},
	} {
		err := b.Disconnect(context.Background(), req)
		if req.Reason == session.ReasonTakenOver {
			if !errors.Is(err, session.ErrStaleGuard) {
				t.Fatalf("kicked: %v, want ErrStaleGuard", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(f.disconnect) != 3 {
		t.Fatalf("%d Disconnect calls, want 3 (none for the kicked connection)", len(f.disconnect))
	}
	for i, want := range []struct {
		abnormal bool
		expiry   uint32
	}{{false, 60}, {true, 0}, {true, 0}} {
		d := f.disconnect[i]
		if d.GetAbnormal() != want.abnormal || d.ExpiryIntervalS == nil || d.GetExpiryIntervalS() != want.expiry || d.GetGuard() != uint64(i+1) {
			t.Errorf("Disconnect %d: %v, want abnormal=%v expiry=%d", i, d, want.abnormal, want.expiry)
		}
	}
}

// While the lease is held an unreachable dsd is retried: dsd would
// otherwise count the session as connected to this live epoch.
func TestBackendDisconnectRetriesWhileLeaseHeld(t *testing.T) {
	f := &fakeSessions{failDisconnects: 2}
	b := New(f, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: context.Background()}}, Options{CallTimeout: 40 * time.Millisecond})
	if err := b.Disconnect(context.Background(), session.DisconnectRequest{ClientID: "c", Guard: 1, Reason: session.ReasonNetworkError}); err != nil {
		t.Fatal(err)
	}
	if len(f.disconnect) != 3 {
		t.Fatalf("%d Disconnect calls, want 3", len(f.disconnect))
	}
	// Once the lease ends, it gives up: dsd ends the epoch's sessions.
	ended, end := context.WithCancel(context.Background())
	end()
	f = &fakeSessions{failDisconnects: 1 << 30}
	b = New(f, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: ended}}, Options{})
	if err := b.Disconnect(context.Background(), session.DisconnectRequest{ClientID: "c", Guard: 1}); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Disconnect after the lease ended: %v, want ErrUnavailable", err)
	}
}
