package dsdbackend

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// fakeInfo answers Info as a site of a two-shard cluster whose shard
// leaders the test sets.
type fakeInfo struct {
	dsdv1.UnimplementedStorageServiceServer
	self  string
	sites map[string]string

	mu      sync.Mutex
	leaders [2]string // site ids
	term    uint64
}

func (f *fakeInfo) setLeaders(a, b string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaders = [2]string{a, b}
	f.term++
}

func (f *fakeInfo) Info(context.Context, *dsdv1.InfoRequest) (*dsdv1.InfoResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := &clusterv1.MetaState{Messages: &clusterv1.DurableStorage{NShards: 2}}
	for _, id := range []string{"a", "b"} {
		st.Sites = append(st.Sites, &clusterv1.Site{Id: id, Address: f.sites[id]})
	}
	ci := &dsdv1.ClusterInfo{State: st}
	for sh := range 2 {
		st.Messages.Shards = append(st.Messages.Shards, &clusterv1.ShardPlacement{Shard: uint32(sh), Replicas: []string{"a", "b"}})
		ci.ShardGroups = append(ci.ShardGroups, &dsdv1.ShardGroupInfo{Shard: uint32(sh), Leader: f.leaders[sh], Term: f.term})
	}
	return &dsdv1.InfoResponse{Site: f.self, NShards: 2, Cluster: ci}, nil
}

// TestLeaseAcrossSites: the gateway registers one epoch with both sites
// of a cluster; a site that leads no shard may stop answering heartbeats
// without the lease being lost; once it leads a shard and still does not
// answer, the lease is lost.
func TestLeaseAcrossSites(t *testing.T) {
	lns := make([]net.Listener, 2)
	sites := map[string]string{}
	for i, id := range []string{"a", "b"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		sites[id] = ln.Addr().String()
	}
	links := make([]*fakeDSD, 2)
	infos := make([]*fakeInfo, 2)
	for i, id := range []string{"a", "b"} {
		links[i] = &fakeDSD{links: make(chan *fakeLink, 16)}
		infos[i] = &fakeInfo{self: id, sites: sites, leaders: [2]string{"a", "a"}, term: 1}
		srv := grpc.NewServer()
		dsdv1.RegisterGatewayLinkServiceServer(srv, links[i])
		dsdv1.RegisterStorageServiceServer(srv, infos[i])
		go func() { _ = srv.Serve(lns[i]) }()
		t.Cleanup(srv.Stop)
	}
	pool, err := NewPool([]string{sites["a"]}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	lease := NewLease(LeaseOptions{Pool: pool, GatewayID: "gw-test", Interval: testInterval, Logger: slog.New(slog.DiscardHandler)})
	lost := make(chan struct{}, 16)
	t.Cleanup(func() { _ = lease.Close() })
	lease.Start(Handlers{Kick: func(string, uint64) {}, Lost: func() { lost <- struct{}{} }})
	next := func(f *fakeDSD) *fakeLink {
		t.Helper()
		select {
		case l := <-f.links:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no GatewayLink opened")
			return nil
		}
	}
	la, lb := next(links[0]), next(links[1])
	if la.hello.GetEpoch() == 0 || la.hello.GetEpoch() != lb.hello.GetEpoch() {
		t.Fatalf("epochs %d and %d, want one epoch with both sites", la.hello.GetEpoch(), lb.hello.GetEpoch())
	}
	if err := lease.WaitRegistered(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tab := pool.Table(); tab.Leader(0) != sites["a"] || tab.Leader(1) != sites["a"] || !tab.Multi() {
		t.Fatalf("table %+v", tab)
	}
	// b leads nothing: its silence costs nothing.
	links[1].stall()
	select {
	case <-lost:
		t.Fatal("lease lost over a site that leads no shard")
	case <-time.After(5 * testInterval):
	}
	if _, err := lease.Current(); err != nil {
		t.Fatalf("Current while a site that leads nothing is silent: %v", err)
	}
	// b is elected for shard 1 and still does not answer.
	for _, f := range infos {
		f.setLeaders("a", "b")
	}
	if err := pool.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := pool.Table().Leader(1); l != sites["b"] {
		t.Fatalf("shard 1 → %s after the refresh, want %s", l, sites["b"])
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("lease held although a site that leads a shard does not answer")
	}
}
