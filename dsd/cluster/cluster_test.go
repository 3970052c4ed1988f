package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratamq/strata/dsd/meta"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// testSite is one site: an engine that outlives restarts, and while
// running a Cluster behind a gRPC server on a loopback port.
type testSite struct {
	id     string
	fs     vfs.FS
	engine *pebble.DB
	c      *Cluster
	srv    *grpc.Server
	addr   string
	served chan struct{}
}

type siteService struct {
	dsdv1.UnimplementedSiteServiceServer
	c *Cluster
}

func (s siteService) Link(stream grpc.BidiStreamingServer[dsdv1.LinkRequest, dsdv1.LinkResponse]) error {
	return s.c.Transport().Serve(stream)
}

func (s siteService) Join(ctx context.Context, req *dsdv1.JoinRequest) (*dsdv1.JoinResponse, error) {
	return s.c.Join(ctx, req)
}

func (s siteService) ShardSnapshot(req *dsdv1.ShardSnapshotRequest, stream grpc.ServerStreamingServer[dsdv1.ShardSnapshotResponse]) error {
	return s.c.ServeShardSnapshot(req, stream.Send)
}

func fastOptions(id, join string, nSites int) Options {
	return Options{
		Site: id, Node: "node-" + id[14:], Join: join, NShards: 4, NSites: nSites, ReplicationFactor: 3,
		DialOptions:  []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		TickInterval: 10 * time.Millisecond, DownAfter: 300 * time.Millisecond, LivenessInterval: 20 * time.Millisecond,
		SnapshotEntries: 5, KeepEntries: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// start runs the site's Cluster on addr ("127.0.0.1:0" for a new port).
func (s *testSite) start(t *testing.T, opts Options, addr string) {
	t.Helper()
	if s.engine == nil {
		db, err := pebble.Open("db", &pebble.Options{FS: s.fs, FormatMajorVersion: pebble.FormatNewest, Logger: quietPebble{}})
		if err != nil {
			t.Fatal(err)
		}
		s.engine = db
	}
	c, err := New(s.engine, opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.c, s.addr, s.srv, s.served = c, lis.Addr().String(), grpc.NewServer(), make(chan struct{})
	dsdv1.RegisterSiteServiceServer(s.srv, siteService{c: c})
	c.Start(s.addr)
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(lis)
	}()
}

// stop stops the Cluster and its server; the engine stays (kill: the
// state on disk is what a crash leaves, since raftlog syncs every Save).
func (s *testSite) stop() {
	if s.c == nil {
		return
	}
	s.srv.Stop()
	<-s.served
	s.c.Close()
	s.c = nil
}

func (s *testSite) close(t *testing.T) {
	s.stop()
	if err := s.engine.Close(); err != nil {
		t.Error(err)
	}
}

func sitesOf(st *clusterv1.MetaState) string {
	out := ""
	for _, s := range st.GetSites() {
		state := "up"
		if !s.GetUp() {
			state = "down"
		}
		out += fmt.Sprintf("%s@%s:%s ", s.GetId(), s.GetAddress(), state)
	}
	return out
}

// TestThreeSites forms a cluster of three by joining (once through a
// follower), allocates the shards once n_sites = 3 are members, marks a
// stopped site down and the same site up again after its restart (same id
// and raft state), and keeps all three views equal; with a snapshot every
// 5 entries the log is compacted on the way, so the restarted site also
// recovers from a snapshot.
func TestThreeSites(t *testing.T) {
	ids := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}
	sites := make([]*testSite, 3)
	for i, id := range ids {
		sites[i] = &testSite{id: id, fs: vfs.NewMem()}
		defer sites[i].close(t)
	}
	sites[0].start(t, fastOptions(ids[0], "", 3), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "a first leader", func() bool { return sites[0].c.Status().IsLeader })
	// The second site joins through the leader, the third through the
	// second, a follower (its conf change is forwarded to the leader).
	sites[1].start(t, fastOptions(ids[1], sites[0].addr, 3), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "the second site follows", func() bool { return sites[1].c.Status().Leader == ids[0] })
	sites[2].start(t, fastOptions(ids[2], sites[1].addr, 3), "127.0.0.1:0")
	same := func(want func(st *clusterv1.MetaState) bool) func() bool {
		return func() bool {
			var first string
			for i, s := range sites {
				if s.c == nil {
					continue
				}
				st := s.c.State()
				if !want(st) {
					return false
				}
				if i == 0 || first == "" {
					first = sitesOf(st)
				} else if sitesOf(st) != first {
					return false
				}
			}
			return true
		}
	}
	allUp := func(st *clusterv1.MetaState) bool {
		if len(st.GetSites()) != 3 || len(st.GetMessages().GetShards()) != 4 {
			return false
		}
		for _, s := range st.GetSites() {
			if !s.GetUp() {
				return false
			}
		}
		return true
	}
	wait.For(t, 10*time.Second, "three sites up and the shards allocated, seen alike by all", same(allUp))
	for _, sp := range sites[1].c.State().GetMessages().GetShards() {
		if !slices.Equal(sp.GetReplicas(), ids) {
			t.Fatalf("shard %d replicas %v, want all three (rf 3)", sp.GetShard(), sp.GetReplicas())
		}
	}

	// Stop the third site: the other two keep a leader and see it down.
	victim := sites[2]
	addr := victim.addr
	victim.stop()
	downC := func(st *clusterv1.MetaState) bool {
		for _, s := range st.GetSites() {
			if (s.GetId() == ids[2]) == s.GetUp() {
				return false
			}
		}
		return len(st.GetSites()) == 3
	}
	wait.For(t, 10*time.Second, "the stopped site down on both others", same(downC))
	wait.For(t, 10*time.Second, "a leader among the two", func() bool {
		return sites[0].c.Status().Leader != "" && sites[0].c.Status().Leader != ids[2] && sites[0].c.Status().Leader == sites[1].c.Status().Leader
	})

	// Restart it from its own state, on the same address: up again, same id.
	victim.start(t, fastOptions(ids[2], "", 3), addr)
	wait.For(t, 10*time.Second, "the restarted site up again, seen alike by all three", same(allUp))
	if st := sites[0].c.Status(); st.SnapshotIndex == 0 {
		t.Fatalf("no snapshot was taken: %+v", st)
	}
}

// TestJoinRefusesOtherNShards: a site with another n_shards cannot join.
func TestJoinRefusesOtherNShards(t *testing.T) {
	a := &testSite{id: "00000000000000a1", fs: vfs.NewMem()}
	defer a.close(t)
	a.start(t, fastOptions(a.id, "", 1), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "a leader", func() bool { return a.c.Status().IsLeader })
	_, err := a.c.Join(context.Background(), &dsdv1.JoinRequest{Site: &clusterv1.Site{Id: "00000000000000b2", Address: "127.0.0.1:1"}, NShards: 5})
	if err == nil {
		t.Fatal("a site with n_shards 5 joined a cluster of 4")
	}
	// A single site allocates every shard to itself at once (n_sites 1).
	wait.For(t, 10*time.Second, "single-site allocation", func() bool { return len(a.c.State().GetMessages().GetShards()) == 4 })
}

// TestTransitionsRecorded: set-replicas from one site to three records
// each shard's transitions (+b +c); a claim is exclusive to its site,
// survives that site's restart (Claimed), and completing it changes the
// replica set and leaves the next transition pending.
func TestTransitionsRecorded(t *testing.T) {
	ids := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}
	sites := make([]*testSite, 3)
	for i, id := range ids {
		sites[i] = &testSite{id: id, fs: vfs.NewMem()}
		defer sites[i].close(t)
	}
	sites[0].start(t, fastOptions(ids[0], "", 1), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "the first site allocates alone", func() bool { return len(sites[0].c.State().GetMessages().GetShards()) == 4 })
	for _, s := range sites[1:] {
		s.start(t, fastOptions(s.id, sites[0].addr, 1), "127.0.0.1:0")
	}
	wait.For(t, 10*time.Second, "three members and the allocation on every site", func() bool {
		for _, s := range sites {
			if st := s.c.State(); len(st.GetSites()) != 3 || len(st.GetMessages().GetShards()) != 4 {
				return false
			}
		}
		return true
	})
	if got := sites[1].c.ReplicaSites(); !slices.Equal(got, ids[:1]) {
		t.Fatalf("replica sites %v before set-replicas, want only the first", got)
	}
	ctx := context.Background()
	if err := sites[1].c.SetReplicas(ctx, ids); err != nil {
		t.Fatal(err)
	}
	for _, sp := range sites[1].c.State().GetMessages().GetShards() {
		var plan []string
		for _, tr := range sp.GetTransitions() {
			plan = append(plan, meta.TransitionString(tr))
		}
		if want := []string{"+" + ids[1], "+" + ids[2]}; !slices.Equal(plan, want) {
			t.Fatalf("shard %d transitions %v, want %v", sp.GetShard(), plan, want)
		}
	}
	next := &clusterv1.Transition{Op: clusterv1.TransitionOp_TRANSITION_OP_ADD, Site: ids[1]}
	if err := sites[1].c.Claim(ctx, 0, next); err != nil {
		t.Fatal(err)
	}
	if err := sites[2].c.Claim(ctx, 0, next); !errors.Is(err, meta.ErrClaimed) {
		t.Fatalf("a second site's claim: %v, want ErrClaimed", err)
	}
	// The claimant restarts: it finds its claim again.
	addr := sites[1].addr
	sites[1].stop()
	sites[1].start(t, fastOptions(ids[1], "", 1), addr)
	wait.For(t, 10*time.Second, "the claim found again after the restart", func() bool {
		cl := sites[1].c.Claimed()
		return len(cl) == 1 && cl[0].Shard == 0 && cl[0].Transition.GetSite() == ids[1]
	})
	wait.For(t, 10*time.Second, "a leader after the restart", func() bool { return sites[1].c.Status().Leader != "" })
	if err := sites[1].c.Complete(ctx, 0, next); err != nil {
		t.Fatal(err)
	}
	sp := sites[1].c.State().GetMessages().GetShards()[0]
	if !slices.Equal(sp.GetReplicas(), ids[:2]) || len(sp.GetTransitions()) != 1 || sp.GetTransitions()[0].GetSite() != ids[2] {
		t.Fatalf("shard 0 after completing +%s: replicas %v, transitions %v", ids[1], sp.GetReplicas(), sp.GetTransitions())
	}
	if len(sites[1].c.Claimed()) != 0 {
		t.Fatalf("claims left after completion: %v", sites[1].c.Claimed())
	}
}

// TestRestartOnNewAddress: the site with the larger id (which the other
// dials) restarts on another port; it tells the members (a Join of a
// member), the other site dials it there, and both record the new address
// with the site up.
func TestRestartOnNewAddress(t *testing.T) {
	a := &testSite{id: "00000000000000a1", fs: vfs.NewMem()}
	b := &testSite{id: "00000000000000b2", fs: vfs.NewMem()}
	defer a.close(t)
	defer b.close(t)
	a.start(t, fastOptions(a.id, "", 2), "127.0.0.1:0")
	b.start(t, fastOptions(b.id, a.addr, 2), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "two sites allocated", func() bool { return len(a.c.State().GetMessages().GetShards()) == 4 })
	old := b.addr
	b.stop()
	b.start(t, fastOptions(b.id, "", 2), "127.0.0.1:0")
	if b.addr == old {
		t.Skip("the new listener got the old port back")
	}
	wait.For(t, 10*time.Second, "the new address recorded on both sites, up", func() bool {
		for _, s := range []*testSite{a, b} {
			rec := s.c.Site(b.id)
			if rec == nil || rec.GetAddress() != b.addr || !rec.GetUp() {
				return false
			}
		}
		return a.c.transport().Connected(b.id)
	})
}

// partition makes the sites in side hear nothing from the others and the
// others nothing from them; nil heals.
func partition(sites []*testSite, side map[string]bool) {
	for _, s := range sites {
		if side == nil {
			s.c.dropFrom.Store(nil)
			continue
		}
		inside := side[s.id]
		drop := func(from string) bool { return side[from] != inside }
		s.c.dropFrom.Store(&drop)
	}
}

// TestLeaderPartitioned: the metadata leader is cut off both ways. The
// majority elects another leader and records the cut-off site down; the
// old leader steps down (check quorum), so there is never a leader on
// each side that could both commit; after healing it follows the new
// leader and is recorded up, with the same state everywhere.
func TestLeaderPartitioned(t *testing.T) {
	ids := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}
	sites := make([]*testSite, 3)
	for i, id := range ids {
		sites[i] = &testSite{id: id, fs: vfs.NewMem()}
		defer sites[i].close(t)
	}
	sites[0].start(t, fastOptions(ids[0], "", 3), "127.0.0.1:0")
	for _, s := range sites[1:] {
		s.start(t, fastOptions(s.id, sites[0].addr, 3), "127.0.0.1:0")
	}
	wait.For(t, 10*time.Second, "three sites up and allocated on all", func() bool {
		for _, s := range sites {
			st := s.c.State()
			if len(st.GetSites()) != 3 || len(st.GetMessages().GetShards()) != 4 {
				return false
			}
		}
		return true
	})
	old := sites[0].c.Status().Leader
	oi := slices.Index(ids, old)
	var majority []*testSite
	for i, s := range sites {
		if i != oi {
			majority = append(majority, s)
		}
	}
	partition(sites, map[string]bool{old: true})
	// The cut-off leader commits nothing more: a proposal there is never
	// applied (it may still believe it leads until check quorum).
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := sites[oi].c.propose(ctx, &clusterv1.Command{Command: &clusterv1.Command_SetSiteStatus{SetSiteStatus: &clusterv1.SetSiteStatus{Site: old, Up: true}}})
	cancel()
	if err == nil {
		t.Fatal("the cut-off leader applied a proposal without a majority")
	}
	wait.For(t, 10*time.Second, "a new leader on the majority side, the old one down there", func() bool {
		l0, l1 := majority[0].c.Status(), majority[1].c.Status()
		if l0.Leader == "" || l0.Leader == old || l0.Leader != l1.Leader {
			return false
		}
		for _, s := range majority {
			if rec := s.c.Site(old); rec == nil || rec.GetUp() {
				return false
			}
		}
		return true
	})
	wait.For(t, 10*time.Second, "the cut-off leader steps down", func() bool { return !sites[oi].c.Status().IsLeader })

	partition(sites, nil)
	wait.For(t, 10*time.Second, "healed: one leader, the old one up again, the same state on all three", func() bool {
		lead := sites[0].c.Status().Leader
		var first *clusterv1.MetaState
		for _, s := range sites {
			st := s.c.Status()
			if st.Leader == "" || st.Leader != lead {
				return false
			}
			ms := s.c.State()
			if rec := s.c.Site(old); rec == nil || !rec.GetUp() {
				return false
			}
			if first == nil {
				first = ms
			} else if sitesOf(ms) != sitesOf(first) {
				return false
			}
		}
		return true
	})
}

// TestJoinAfterCompaction: a site that joins after the leader compacted
// its log cannot be sent the first entries; it catches up from the
// leader's snapshot and then holds the same state.
func TestJoinAfterCompaction(t *testing.T) {
	a := &testSite{id: "00000000000000a1", fs: vfs.NewMem()}
	b := &testSite{id: "00000000000000b2", fs: vfs.NewMem()}
	defer a.close(t)
	defer b.close(t)
	a.start(t, fastOptions(a.id, "", 1), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "allocated", func() bool { return len(a.c.State().GetMessages().GetShards()) == 4 })
	ctx := context.Background()
	for i := range 12 {
		site := &clusterv1.Site{Id: a.id, Address: a.addr, Node: fmt.Sprintf("node-%d", i)}
		if err := a.c.propose(ctx, &clusterv1.Command{Command: &clusterv1.Command_SetSite{SetSite: &clusterv1.SetSite{Site: site}}}); err != nil {
			t.Fatal(err)
		}
	}
	if first, _ := a.c.store.FirstIndex(); first <= 2 {
		t.Fatalf("the leader's log was not compacted: first index %d", first)
	}
	b.start(t, fastOptions(b.id, a.addr, 1), "127.0.0.1:0")
	if !wait.Until(10*time.Second, func() bool {
		return sitesOf(b.c.State()) == sitesOf(a.c.State()) && len(b.c.State().GetSites()) == 2 &&
			b.c.Site(a.id).GetNode() == "node-11" && len(b.c.State().GetMessages().GetShards()) == 4
	}) {
		t.Fatalf("the joined site does not hold the leader's state:\nleader %+v %s\njoined %+v %s", a.c.Status(), sitesOf(a.c.State()), b.c.Status(), sitesOf(b.c.State()))
	}
	if st := b.c.Status(); st.SnapshotIndex == 0 {
		t.Fatalf("the joined site caught up without a snapshot: %+v", st)
	}
}
