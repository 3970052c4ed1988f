package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stratamq/strata/dsd/placement"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestPreferredLeaders: the preferred leaders are one of each shard's
// replicas, the same whatever the order of the shards and replicas, and
// balanced: with the allocations of dsd/placement every site prefers
// within one of the same number of shards.
func TestPreferredLeaders(t *testing.T) {
	sites := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3", "00000000000000d4", "00000000000000e5"}
	placements := func(sets [][]string) []*clusterv1.ShardPlacement {
		var out []*clusterv1.ShardPlacement
		for i, set := range sets {
			out = append(out, &clusterv1.ShardPlacement{Shard: uint32(i), Replicas: set})
		}
		return out
	}
	// Three sites, every shard on all three: round-robin.
	got := preferredLeaders(placements(placement.Allocate(4, sites[:3], 3)))
	want := map[uint32]string{0: sites[0], 1: sites[1], 2: sites[2], 3: sites[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("3 sites, rf 3: %v, want %v", got, want)
	}
	for _, c := range []struct{ nShards, nSites, rf int }{
		{1, 3, 3}, {3, 3, 3}, {16, 3, 3}, {16, 3, 2}, {5, 5, 3}, {16, 5, 3}, {7, 4, 2}, {16, 5, 5}, {4, 2, 2},
	} {
		t.Run(fmt.Sprintf("shards=%d/sites=%d/rf=%d", c.nShards, c.nSites, c.rf), func(t *testing.T) {
			sets := placement.Allocate(c.nShards, sites[:c.nSites], c.rf)
			ps := placements(sets)
			got := preferredLeaders(ps)
			leads := map[string]int{}
			for shard, set := range sets {
				l := got[uint32(shard)]
				if !slices.Contains(set, l) {
					t.Fatalf("shard %d prefers %q, not one of its replicas %v", shard, l, set)
				}
				leads[l]++
			}
			lo, hi := c.nShards, 0
			for _, s := range sites[:c.nSites] {
				lo, hi = min(lo, leads[s]), max(hi, leads[s])
			}
			if hi-lo > 1 {
				t.Fatalf("unbalanced: %v leads per site", leads)
			}
			// The same from the shards and replicas in another order.
			slices.Reverse(ps)
			for _, p := range ps {
				p.Replicas = slices.Clone(p.GetReplicas())
				slices.Reverse(p.Replicas)
			}
			if again := preferredLeaders(ps); fmt.Sprint(again) != fmt.Sprint(got) {
				t.Fatalf("another order gives %v, want %v", again, got)
			}
		})
	}
	if got := preferredLeaders([]*clusterv1.ShardPlacement{{Shard: 2}}); got[2] != "" {
		t.Fatalf("a shard without replicas prefers %q", got[2])
	}
}

// TestShardLeadersSpread: three sites, four shards on all three. Each
// shard's preferred leader campaigns first, so the leaders are spread
// (every site leads at least one shard); a stopped site's shards are
// taken by the others, and once it is back and caught up it is handed
// them again (LeaderBalanceAfter); a shard's leader hands it over to the
// preferred replica also when another site won the election.
func TestShardLeadersSpread(t *testing.T) {
	const nShards = 4
	ids := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}
	sites := make([]*testSite, 3)
	machines := make([]*fakeMachine, 3)
	opts := func(i int, join string) Options {
		o := fastOptions(ids[i], join, 3)
		o.NShards, o.Shards, o.LeaderBalanceAfter = nShards, machines[i], 300*time.Millisecond
		return o
	}
	for i, id := range ids {
		sites[i] = &testSite{id: id, fs: vfs.NewMem()}
		machines[i] = newFakeMachine(nShards)
		defer sites[i].close(t)
	}
	sites[0].start(t, opts(0, ""), "127.0.0.1:0")
	sites[1].start(t, opts(1, sites[0].addr), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "the second site follows", func() bool { return sites[1].c.Status().Leader != "" })
	sites[2].start(t, opts(2, sites[0].addr), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "the shards allocated", func() bool { return len(sites[2].c.State().GetMessages().GetShards()) == nShards })
	preferred := preferredLeaders(sites[0].c.State().GetMessages().GetShards())

	// leaders are the shards' leaders, as the sites that lead them say
	// (-1: none).
	leaders := func() []int {
		out := slices.Repeat([]int{-1}, nShards)
		for i, s := range sites {
			if s.c == nil {
				continue
			}
			for _, st := range s.c.ShardStatuses() {
				if st.IsLeader {
					out[st.Shard] = i
				}
			}
		}
		return out
	}
	wantLeaders := make([]int, nShards)
	for shard := range nShards {
		wantLeaders[shard] = slices.Index(ids, preferred[uint32(shard)])
	}
	for i := range sites {
		if !slices.Contains(wantLeaders, i) {
			t.Fatalf("site %d prefers no shard: %v", i, wantLeaders)
		}
	}
	var got []int
	if !wait.Until(10*time.Second, func() bool { got = leaders(); return slices.Equal(got, wantLeaders) }) {
		t.Fatalf("leaders %v, want the preferred %v", got, wantLeaders)
	}

	// The first site stops: its shards go to the others; back, it is
	// handed them again.
	addr := sites[0].addr
	sites[0].stop()
	if !wait.Until(10*time.Second, func() bool { got = leaders(); return !slices.Contains(got, -1) }) {
		t.Fatalf("leaders without the first site: %v", got)
	}
	sites[0].start(t, opts(0, ""), addr)
	if !wait.Until(15*time.Second, func() bool { got = leaders(); return slices.Equal(got, wantLeaders) }) {
		t.Fatalf("leaders after the restart %v, want the preferred %v", got, wantLeaders)
	}
	// The leaders serve: an entry proposed on each applies everywhere.
	for shard, l := range wantLeaders {
		entry := fmt.Sprintf("s%d-from-%d", shard, l)
		wait.For(t, 10*time.Second, "the preferred leader takes a proposal", func() bool { return machines[l].replica(shard).Propose([]byte(entry)) == nil })
		for i := range sites {
			wait.For(t, 10*time.Second, "the entry applied on every replica", func() bool {
				return slices.ContainsFunc(machines[i].entries(shard), func(e string) bool { return strings.HasSuffix(e, ":"+entry) })
			})
		}
	}
}

// TestTransferStopsReads: once the leader starts a leadership transfer,
// it refuses reads for four election timeouts of that term although a
// quorum confirmed it: the transferee's forced campaign ignores the
// voters' lease.
func TestTransferStopsReads(t *testing.T) {
	c := &Cluster{opts: Options{ElectionTicks: 10, TickInterval: 10 * time.Millisecond}, self: 1}
	g := &shardGroup{c: c, shard: 3, acks: map[uint64]leaderAck{}}
	g.leader.Store(true)
	g.term.Store(5)
	now := time.Now()
	g.leaseConfirmed(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 5), uint64(now.UnixNano())))
	if err := g.CanRead(); err != nil {
		t.Fatalf("confirmed: %v", err)
	}
	g.noReadsTerm.Store(5)
	g.noReadsUntil.Store(now.Add(transferFence * g.electionTimeout()).UnixNano())
	var nl *NotLeaderError
	if err := g.CanRead(); !errors.As(err, &nl) || nl.Unconfirmed == 0 {
		t.Fatalf("a read during a transfer: %v", err)
	}
	if !g.readsFenced(5, now.Add(399*time.Millisecond)) || g.readsFenced(5, now.Add(401*time.Millisecond)) || g.readsFenced(6, now) {
		t.Fatal("the fence is not four election timeouts of its term")
	}
}
