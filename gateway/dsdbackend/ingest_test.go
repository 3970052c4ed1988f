package dsdbackend

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// fakeIngest is dsd's ingest side: every stream it accepts hands its
// requests to the test, which answers through the stream's answers channel
// or breaks it by closing that channel.
type fakeIngest struct {
	dsdv1.UnimplementedStorageServiceServer
	streams chan *fakeIngestStream
}

type fakeIngestStream struct {
	stores  chan *dsdv1.IngestStore
	answers chan *dsdv1.IngestResponse
}

func (f *fakeIngest) Ingest(stream dsdv1.StorageService_IngestServer) error {
	s := &fakeIngestStream{stores: make(chan *dsdv1.IngestStore, 1024), answers: make(chan *dsdv1.IngestResponse, 16)}
	f.streams <- s
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			for _, st := range req.GetStores() {
				s.stores <- st
			}
		}
	}()
	for {
		select {
		case a, ok := <-s.answers:
			if !ok {
				return errors.New("fake: stream broken")
			}
			if err := stream.Send(a); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// serveFakeDSD serves a fake dsd (the services register adds) on a free
// loopback port and returns a client of it; srv.Stop stops it.
func serveFakeDSD(t testing.TB, register func(*grpc.Server)) (c *client.Client, srv *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(ln) }()
	if c, err = client.Dial(ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func startIngest(t *testing.T, reg Registrar, opts IngestOptions) (*fakeIngest, *Ingest) {
	t.Helper()
	f := &fakeIngest{streams: make(chan *fakeIngestStream, 16)}
	c, srv := serveFakeDSD(t, func(s *grpc.Server) { dsdv1.RegisterStorageServiceServer(s, f) })
	opts.Logger = slog.New(slog.DiscardHandler)
	g := NewIngest(c.Storage, reg, opts)
	t.Cleanup(func() {
		_ = g.Close()
		_ = c.Close()
		srv.Stop()
	})
	return f, g
}

func (f *fakeIngest) next(t *testing.T) *fakeIngestStream {
	t.Helper()
	select {
	case s := <-f.streams:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no ingest stream opened")
		return nil
	}
}

func (s *fakeIngestStream) take(t *testing.T, n int) []*dsdv1.IngestStore {
	t.Helper()
	var out []*dsdv1.IngestStore
	for len(out) < n {
		select {
		case st := <-s.stores:
			out = append(out, st)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d stores, want %d", len(out), n)
		}
	}
	return out
}

type result struct {
	id  string
	err error
}

func submit(g *Ingest, results chan result, id string, req session.StoreRequest) {
	g.Submit(req, func(err error) { results <- result{id: id, err: err} })
}

func wantResults(t *testing.T, results chan result, want ...string) []error {
	t.Helper()
	var errs []error
	for _, id := range want {
		select {
		case r := <-results:
			if r.id != id {
				t.Fatalf("completed %s, want %s next", r.id, id)
			}
			errs = append(errs, r.err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not completed", id)
		}
	}
	return errs
}

var held = fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: context.Background()}}

func store(client string, seq uint64, topics ...string) session.StoreRequest {
	req := session.StoreRequest{ClientID: client, Guard: 7, FirstSeq: seq}
	for _, tp := range topics {
		req.Messages = append(req.Messages, session.Message{Topic: tp, Payload: []byte(tp), QoS: 1})
	}
	return req
}

// Stores of many connections share requests; each completes when dsd names
// it, and a failure carries the session error of its status code.
func TestIngestCompletesAndTranslates(t *testing.T) {
	f, g := startIngest(t, held, IngestOptions{})
	s := f.next(t)
	results := make(chan result, 16)
	submit(g, results, "a1", store("a", 1, "t/1"))
	submit(g, results, "b1", store("b", 1, "t/2", "t/3"))
	submit(g, results, "a2", store("a", 2, "t/4"))
	got := s.take(t, 3)
	if got[0].GetClientId() != "a" || got[1].GetClientId() != "b" || got[2].GetProducer().GetFirstSeq() != 2 ||
		got[1].GetProducer().GetEpoch() != 7 || len(got[1].GetMessages()) != 2 {
		t.Fatalf("stores %v", got)
	}
	s.answers <- &dsdv1.IngestResponse{Stored: []uint64{got[0].GetId(), got[2].GetId()}}
	if errs := wantResults(t, results, "a1", "a2"); errs[0] != nil || errs[1] != nil {
		t.Fatalf("errors %v", errs)
	}
	s.answers <- &dsdv1.IngestResponse{Failed: []*dsdv1.IngestFailure{{Id: got[1].GetId(), Code: 9, Message: "stale epoch"}}}
	if errs := wantResults(t, results, "b1"); !errors.Is(errs[0], session.ErrStaleGuard) {
		t.Fatalf("FAILED_PRECONDITION: %v, want ErrStaleGuard", errs[0])
	}
	submit(g, results, "c1", store("c", 1, "t/5"))
	got = s.take(t, 1)
	s.answers <- &dsdv1.IngestResponse{Failed: []*dsdv1.IngestFailure{{Id: got[0].GetId(), Code: 8, Message: "disk full"}}}
	if errs := wantResults(t, results, "c1"); !errors.Is(errs[0], session.ErrQuotaExceeded) {
		t.Fatalf("RESOURCE_EXHAUSTED: %v, want ErrQuotaExceeded", errs[0])
	}
}

// A stream that breaks (dsd restarts) loses nothing: the Stores sent and
// not answered go again, in their order, on the next stream.
func TestIngestResendsAfterBreak(t *testing.T) {
	f, g := startIngest(t, held, IngestOptions{})
	s := f.next(t)
	results := make(chan result, 16)
	for i, id := range []string{"x1", "x2", "x3"} {
		submit(g, results, id, store("x", uint64(i+1), "t"))
	}
	first := s.take(t, 3)
	s.answers <- &dsdv1.IngestResponse{Stored: []uint64{first[0].GetId()}}
	wantResults(t, results, "x1")
	close(s.answers)
	s2 := f.next(t)
	again := s2.take(t, 2)
	if again[0].GetProducer().GetFirstSeq() != 2 || again[1].GetProducer().GetFirstSeq() != 3 {
		t.Fatalf("resent %v", again)
	}
	s2.answers <- &dsdv1.IngestResponse{Stored: []uint64{again[0].GetId(), again[1].GetId()}}
	if errs := wantResults(t, results, "x2", "x3"); errs[0] != nil || errs[1] != nil {
		t.Fatalf("errors %v", errs)
	}
}

// A Store dsd does not answer in time fails as unavailable; so do the
// Stores waiting when the lease ends.
func TestIngestTimeoutAndLeaseEnd(t *testing.T) {
	f, g := startIngest(t, held, IngestOptions{Timeout: 200 * time.Millisecond})
	s := f.next(t)
	results := make(chan result, 16)
	submit(g, results, "late", store("l", 1, "t"))
	s.take(t, 1)
	if errs := wantResults(t, results, "late"); !errors.Is(errs[0], session.ErrUnavailable) {
		t.Fatalf("timeout: %v, want ErrUnavailable", errs[0])
	}

	ended, end := context.WithCancel(context.Background())
	f2, g2 := startIngest(t, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 2, Ended: ended}}, IngestOptions{})
	s2 := f2.next(t)
	submit(g2, results, "cut", store("c", 1, "t"))
	s2.take(t, 1)
	end()
	if errs := wantResults(t, results, "cut"); !errors.Is(errs[0], session.ErrUnavailable) {
		t.Fatalf("lease ended: %v, want ErrUnavailable", errs[0])
	}
}
