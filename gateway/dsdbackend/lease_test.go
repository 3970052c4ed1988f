package dsdbackend

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// fakeDSD serves GatewayLink: hello, welcome, then what the test pushes,
// and a HeartbeatAck for each heartbeat unless it is stalled.
type fakeDSD struct {
	dsdv1.UnimplementedGatewayLinkServiceServer
	links chan *fakeLink

	mu      sync.Mutex
	stalled bool // heartbeats go unanswered
	// ackDelay holds each heartbeat's acknowledgement that long after it
	// arrived (a link whose acknowledgements queue behind pushed data).
	ackDelay time.Duration
}

type fakeLink struct {
	hello *dsdv1.GatewayHello
	send  chan *dsdv1.GatewayLinkResponse
	brk   chan struct{}
}

func (f *fakeDSD) GatewayLink(stream dsdv1.GatewayLinkService_GatewayLinkServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.Send(&dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Welcome{Welcome: &dsdv1.GatewayWelcome{Site: "test"}}}); err != nil {
		return err
	}
	l := &fakeLink{hello: req.GetHello(), send: make(chan *dsdv1.GatewayLinkResponse), brk: make(chan struct{})}
	select {
	case f.links <- l:
	case <-stream.Context().Done():
		return nil
	}
	// The receiver ends when the stream does (Recv fails once this
	// handler returns).
	acks := make(chan uint64)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			hb := req.GetHeartbeat()
			if hb == nil || f.isStalled() {
				continue
			}
			f.mu.Lock()
			d := f.ackDelay
			f.mu.Unlock()
			go func(seq uint64) {
				select {
				case <-time.After(d):
				case <-stream.Context().Done():
					return
				}
				select {
				case acks <- seq:
				case <-stream.Context().Done():
				}
			}(hb.GetSeq())
		}
	}()
	for {
		select {
		case r := <-l.send:
			if err := stream.Send(r); err != nil {
				return err
			}
		case seq := <-acks:
			ack := &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_HeartbeatAck{HeartbeatAck: &dsdv1.HeartbeatAck{Seq: seq}}}
			if err := stream.Send(ack); err != nil {
				return err
			}
		case <-l.brk:
			return errors.New("link broken by the test")
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (f *fakeDSD) isStalled() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stalled
}

// stall stops answering heartbeats until the returned function is called.
func (f *fakeDSD) stall() func() {
	f.mu.Lock()
	f.stalled = true
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.stalled = false
		f.mu.Unlock()
	}
}

type leaseEnv struct {
	dsd   *fakeDSD
	lease *Lease
	kicks chan [2]any
	lost  chan struct{}
}

// testInterval is the heartbeat interval of these tests: long enough that a
// heartbeat's round trip fits well inside 2 intervals under the race
// detector on a loaded 2-core machine.
const testInterval = 300 * time.Millisecond

func startLease(t *testing.T) *leaseEnv {
	t.Helper()
	f := &fakeDSD{links: make(chan *fakeLink, 16)}
	c, srv := serveFakeDSD(t, func(s *grpc.Server) { dsdv1.RegisterGatewayLinkServiceServer(s, f) })
	e := &leaseEnv{dsd: f, kicks: make(chan [2]any, 16), lost: make(chan struct{}, 16)}
	e.lease = NewLease(LeaseOptions{Client: c, GatewayID: "gw-test", Interval: testInterval, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() {
		_ = e.lease.Close()
		_ = c.Close()
		srv.Stop()
	})
	e.lease.Start(Handlers{
		Kick: func(id string, guard uint64) { e.kicks <- [2]any{id, guard} },
		Lost: func() { e.lost <- struct{}{} },
	})
	return e
}

func (e *leaseEnv) nextLink(t *testing.T) *fakeLink {
	t.Helper()
	select {
	case l := <-e.dsd.links:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no GatewayLink opened")
		return nil
	}
}

func TestLeaseRegistersAndRoutesKicks(t *testing.T) {
	e := startLease(t)
	l := e.nextLink(t)
	if l.hello.GetGatewayId() != "gw-test" || l.hello.GetEpoch() == 0 {
		t.Fatalf("hello %v", l.hello)
	}
	if err := e.lease.WaitRegistered(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := e.lease.Current()
	if err != nil || r.Epoch != l.hello.GetEpoch() || r.GatewayID != "gw-test" || e.lease.Ready() != nil {
		t.Fatalf("Current = %+v, %v; Ready = %v", r, err, e.lease.Ready())
	}
	l.send <- &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Kick{Kick: &dsdv1.SessionKick{ClientId: "c1", Guard: 5, Reason: "taken_over"}}}
	if k := <-e.kicks; k[0] != "c1" || k[1] != uint64(5) {
		t.Fatalf("kick %v", k)
	}
	// Heartbeats keep the lease well past 2 intervals.
	select {
	case <-e.lost:
		t.Fatal("lease lost while dsd answers")
	case <-time.After(5 * testInterval):
	}
}

// A broken link is opened again with the same epoch; the connections stay.
func TestLeaseReopensBrokenLinkWithSameEpoch(t *testing.T) {
	e := startLease(t)
	l := e.nextLink(t)
	close(l.brk)
	l2 := e.nextLink(t)
	if l2.hello.GetEpoch() != l.hello.GetEpoch() {
		t.Fatalf("reopened with epoch %d, want %d", l2.hello.GetEpoch(), l.hello.GetEpoch())
	}
	select {
	case <-e.lost:
		t.Fatal("lease lost although the link was reopened at once")
	default:
	}
}

// dsd stops answering (the link stays open): the lease is lost after 2
// intervals, CONNECTs are refused meanwhile, and once dsd answers the
// gateway registers a new, greater epoch.
func TestLeaseLostWhenHeartbeatsGoUnanswered(t *testing.T) {
	e := startLease(t)
	l := e.nextLink(t)
	resume := e.dsd.stall()
	stalled := time.Now()
	select {
	case <-e.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("lease not lost while dsd is stalled")
	}
	// 2 intervals from the send of the last acknowledged heartbeat, which
	// went out at most an interval before the stall.
	if d := time.Since(stalled); d < testInterval/2 {
		t.Fatalf("lease lost %v after the stall: too early", d)
	}
	// Registrations may come and go while stalled (the hello is answered,
	// heartbeats are not); after resuming, one holds.
	resume()
	var last *fakeLink
	deadline := time.After(10 * time.Second)
	for last == nil || last.hello.GetEpoch() == l.hello.GetEpoch() || e.lease.Ready() != nil {
		select {
		case last = <-e.dsd.links:
		case <-deadline:
			t.Fatal("not registered again after dsd resumed")
		case <-time.After(testInterval):
		}
	}
	if last.hello.GetEpoch() <= l.hello.GetEpoch() {
		t.Fatalf("new epoch %d not above %d", last.hello.GetEpoch(), l.hello.GetEpoch())
	}
}

// dsd gone: the link breaks, cannot be reopened, the lease is lost and
// Current refuses with ErrUnavailable.
func TestLeaseLostWhenDSDGone(t *testing.T) {
	f := &fakeDSD{links: make(chan *fakeLink, 16)}
	c, srv := serveFakeDSD(t, func(s *grpc.Server) { dsdv1.RegisterGatewayLinkServiceServer(s, f) })
	defer c.Close()
	lost := make(chan struct{}, 4)
	lease := NewLease(LeaseOptions{Client: c, GatewayID: "gw", Interval: testInterval, Logger: slog.New(slog.DiscardHandler)})
	defer lease.Close()
	lease.Start(Handlers{Kick: func(string, uint64) {}, Lost: func() { lost <- struct{}{} }})
	<-f.links
	if err := lease.WaitRegistered(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("lease not lost with dsd gone")
	}
	if _, err := lease.Current(); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Current = %v, want ErrUnavailable", err)
	}
	if lease.Ready() == nil {
		t.Fatal("ready without dsd")
	}
}

func TestLeaseCloseWithoutStart(t *testing.T) {
	l := NewLease(LeaseOptions{GatewayID: "gw"})
	if _, err := l.Current(); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Current = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// Each heartbeat acknowledged 1.5 intervals after it went out (they queue
// behind pushed batches on a busy link): the lease holds, because a
// heartbeat goes out every quarter interval and the lease runs from the
// sending of the latest acknowledged one. With one heartbeat per interval it
// ran out within a few intervals (benchcmp fanout1k lost it so).
func TestLeaseHeldWhileAcksLag(t *testing.T) {
	e := startLease(t)
	e.dsd.mu.Lock()
	e.dsd.ackDelay = testInterval * 3 / 2
	e.dsd.mu.Unlock()
	l := e.nextLink(t)
	select {
	case <-e.lost:
		t.Fatal("lease lost while every heartbeat was acknowledged, late")
	case l2 := <-e.dsd.links:
		t.Fatalf("registered again (epoch %d, was %d): the lease ran out", l2.hello.GetEpoch(), l.hello.GetEpoch())
	case <-time.After(10 * testInterval):
	}
	if err := e.lease.Ready(); err != nil {
		t.Fatalf("not ready: %v", err)
	}
}
