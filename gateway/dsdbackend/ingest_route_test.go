package dsdbackend

import (
	"fmt"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// startSites serves n fake dsd ingest sides and returns a pool over them
// (not started: the test sets its table) and their fakes.
func startSites(t *testing.T, n int) (*Pool, []*fakeIngest, []string) {
	t.Helper()
	var fakes []*fakeIngest
	var addrs []string
	for range n {
		f := &fakeIngest{streams: make(chan *fakeIngestStream, 16)}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		dsdv1.RegisterStorageServiceServer(srv, f)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		fakes = append(fakes, f)
		addrs = append(addrs, ln.Addr().String())
	}
	p, err := NewPool(addrs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, fakes, addrs
}

func setLeaders(p *Pool, addrs []string, leaders ...string) {
	p.setTable(func(*Table) *Table {
		return &Table{NShards: len(leaders), Sites: addrs, Leaders: leaders, Default: addrs[0]}
	})
}

// TestRoutedIngestFollowsLeader: a Store goes to its shard's leader; a
// leader that steps down refuses the Stores it did not commit, naming the
// new leader; they go there in their order, after the Store still in
// flight to the old leader is answered (refused too), so the new leader
// sees the producer's sequence without a gap.
func TestRoutedIngestFollowsLeader(t *testing.T) {
	p, fakes, addrs := startSites(t, 2)
	const nShards = 2
	leaders := []string{addrs[0], addrs[0]}
	setLeaders(p, addrs, leaders...)
	g := NewRoutedIngest(p, held, IngestOptions{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = g.Close() })
	a, b := fakes[0].next(t), fakes[1].next(t)
	results := make(chan result, 16)
	for seq := 1; seq <= 3; seq++ {
		submit(g, results, fmt.Sprintf("x%d", seq), store("x", uint64(seq), "t"))
	}
	got := a.take(t, 3)
	a.answers <- &dsdv1.IngestResponse{Stored: []uint64{got[0].GetId()}}
	wantResults(t, results, "x1")
	submit(g, results, "x4", store("x", 4, "t"))
	got = append(got, a.take(t, 1)...)
	shard := ShardOf("x", nShards)
	refusal := fmt.Sprintf("cluster: this site does not lead shard %d; its leader is site b at %s", shard, addrs[1])
	// x2 and x3 refused first: x4 is still in flight to the old leader.
	a.answers <- &dsdv1.IngestResponse{Failed: []*dsdv1.IngestFailure{
		{Id: got[1].GetId(), Code: 14, Message: refusal}, {Id: got[2].GetId(), Code: 14, Message: refusal}}}
	a.answers <- &dsdv1.IngestResponse{Failed: []*dsdv1.IngestFailure{{Id: got[3].GetId(), Code: 14, Message: refusal}}}
	moved := b.take(t, 3)
	for i, st := range moved {
		if st.GetProducer().GetFirstSeq() != uint64(i+2) {
			t.Fatalf("the new leader got sequence %d at %d: %v", st.GetProducer().GetFirstSeq(), i, moved)
		}
	}
	if l := p.Table().Leader(shard); l != addrs[1] {
		t.Fatalf("shard %d → %s, want %s", shard, l, addrs[1])
	}
	b.answers <- &dsdv1.IngestResponse{Stored: []uint64{moved[0].GetId(), moved[1].GetId(), moved[2].GetId()}}
	if errs := wantResults(t, results, "x2", "x3", "x4"); errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("errors %v", errs)
	}
	// A later Store of the shard goes straight to the new leader.
	submit(g, results, "x5", store("x", 5, "t"))
	if st := b.take(t, 1); st[0].GetProducer().GetFirstSeq() != 5 {
		t.Fatalf("x5 at the new leader: %v", st)
	}
}

// TestRoutedIngestBrokenLeader: the stream to a leader breaks (it died);
// its unanswered Stores go to the new leader the table names, in order.
func TestRoutedIngestBrokenLeader(t *testing.T) {
	p, fakes, addrs := startSites(t, 2)
	setLeaders(p, addrs, addrs[0], addrs[0])
	g := NewRoutedIngest(p, held, IngestOptions{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = g.Close() })
	a, b := fakes[0].next(t), fakes[1].next(t)
	results := make(chan result, 16)
	for seq := 1; seq <= 3; seq++ {
		submit(g, results, fmt.Sprintf("y%d", seq), store("y", uint64(seq), "t"))
	}
	a.take(t, 3)
	// The table names the new leader; the Stores in flight to the old one
	// move when its stream breaks (it died).
	setLeaders(p, addrs, addrs[1], addrs[1])
	close(a.answers)
	moved := b.take(t, 3)
	for i, st := range moved {
		if st.GetProducer().GetFirstSeq() != uint64(i+1) {
			t.Fatalf("the new leader got %v", moved)
		}
	}
	b.answers <- &dsdv1.IngestResponse{Stored: []uint64{moved[0].GetId(), moved[1].GetId(), moved[2].GetId()}}
	if errs := wantResults(t, results, "y1", "y2", "y3"); errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("errors %v", errs)
	}
}

// TestRoutedRouter: a Watch entry is split over the sites that lead its
// shards (the caller sees one entry), a Read entry goes to its stream's
// shard's leader; a site that refuses an entry because it does not lead
// its shard makes the owner lose all its entries (removed at the other
// sites) and add them again; so does a change of the table that moves a
// shard an entry reads.
func TestRoutedRouter(t *testing.T) {
	p, _, addrs := startSites(t, 2)
	a, b := addrs[0], addrs[1]
	setLeaders(p, addrs, a, b, a)
	r := NewRoutedRouter(p)
	o := &recordingOwner{}
	w := r.AddWatch(o, 1, nil, "t/#", []int64{10, 20, 30})
	it, err := proto.Marshal(&storagev1.Iterator{Shard: 1})
	if err != nil {
		t.Fatal(err)
	}
	rd := r.AddRead(o, 2, nil, append([]byte{1}, it...), 10, 0)
	sent := func(site string) []*dsdv1.GatewayLinkRequest {
		r.mu.Lock()
		defer r.mu.Unlock()
		l := r.mu.lanes[site]
		var out []*dsdv1.GatewayLinkRequest
		for _, q := range l.queue {
			if q.gen == l.gen {
				out = append(out, q.req)
			}
		}
		l.queue = nil
		return out
	}
	toA, toB := sent(a), sent(b)
	if len(toA) != 1 || len(toA[0].GetWatch().GetShards()) != 2 || toA[0].GetWatch().GetShards()[1].GetStartTimeUs() != 30 {
		t.Fatalf("to %s: %v", a, toA)
	}
	if len(toB) != 2 || toB[0].GetWatch().GetShards()[0].GetShard() != 1 || toB[1].GetRead().GetEntryId() != rd {
		t.Fatalf("to %s: %v", b, toB)
	}
	// Pushes of either site's Watch reach the caller's one entry.
	r.dispatch(b, &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{EntryId: toB[0].GetWatch().GetEntryId()}}})
	r.dispatch(a, &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{EntryId: w}}})
	if got := o.got(); len(got) != 2 {
		t.Fatalf("owner got %v", got)
	}
	// b refuses the Read: it no longer leads shard 1, a does.
	r.dispatch(b, &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Error{Error: &dsdv1.EntryError{EntryId: rd, Code: 14, EntryEnded: true,
		Message: "cluster: this site does not lead shard 1; its leader is site a at " + a}}})
	if got := o.got(); len(got) != 3 || got[2] != "lost" {
		t.Fatalf("owner got %v after a refusal", got)
	}
	if l := p.Table().Leader(1); l != a {
		t.Fatalf("shard 1 → %s after the refusal, want %s", l, a)
	}
	// Its other entries are removed: the Watch at both sites (not the
	// refused Read, gone there already).
	toA, toB = sent(a), sent(b)
	if len(toA) != 1 || toA[0].GetRemove().GetEntryId() != w || len(toB) != 1 || toB[0].GetRemove() == nil {
		t.Fatalf("removes: to a %v, to b %v", toA, toB)
	}
	// Added again, all to a now; then the table moves shard 2 to b.
	r.AddWatch(o, 1, nil, "t/#", []int64{10, 20, 30})
	if toA = sent(a); len(toA) != 1 || len(toA[0].GetWatch().GetShards()) != 3 {
		t.Fatalf("added again: %v", toA)
	}
	setLeaders(p, addrs, a, a, b)
	r.retarget()
	if got := o.got(); len(got) != 4 || got[3] != "lost" {
		t.Fatalf("owner got %v after the table moved a shard", got)
	}
	r.retarget()
	if got := o.got(); len(got) != 4 {
		t.Fatalf("owner without entries lost them again: %v", got)
	}
}
