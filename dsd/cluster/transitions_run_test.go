package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/stratamq/strata/dsd/meta"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestTransitionsRun: one site allocates two shards alone (local shards,
// no groups); two sites join; set-replicas to all three runs every
// shard's transitions: the single replica starts a group from its state,
// each added site joins as a learner, catches up by a snapshot and is
// promoted, and the transitions complete; the three replicas then apply
// the same entries. A site restarted in the middle resumes. Then the first
// site, which leads every group, leaves: it hands leadership over, its
// replicas are removed, its groups stopped and its data deleted, and the
// two others go on.
func TestTransitionsRun(t *testing.T) {
	const nShards = 2
	ids := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}
	sites := make([]*testSite, 3)
	machines := make([]*fakeMachine, 3)
	opts := func(i int, join string) Options {
		o := fastOptions(ids[i], join, 1)
		o.NShards, o.Shards = nShards, machines[i]
		// Not a balancing test: the first site keeps the groups it starts
		// (the leave below checks it leads them) however long the run.
		o.LeaderBalanceAfter = -1
		return o
	}
	for i, id := range ids {
		sites[i] = &testSite{id: id, fs: vfs.NewMem()}
		machines[i] = newFakeMachine(nShards)
		defer sites[i].close(t)
	}
	sites[0].start(t, opts(0, ""), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "the first site allocates alone", func() bool { return len(sites[0].c.State().GetMessages().GetShards()) == nShards })
	for i := 1; i < 3; i++ {
		sites[i].start(t, opts(i, sites[0].addr), "127.0.0.1:0")
		wait.For(t, 10*time.Second, "the site joins", func() bool { return len(sites[i].c.State().GetSites()) == i+1 })
	}
	if st := sites[0].c.ShardStatuses(); len(st) != 0 {
		t.Fatalf("shard groups before set-replicas: %+v", st)
	}
	replicas := func(i, shard int) []string {
		return sites[i].c.State().GetMessages().GetShards()[shard].GetReplicas()
	}
	settled := func(want int) func() bool {
		return func() bool {
			for _, sp := range sites[0].c.State().GetMessages().GetShards() {
				if len(sp.GetReplicas()) != want || len(sp.GetTransitions()) != 0 {
					return false
				}
			}
			return true
		}
	}
	leaderOf := func(shard int) int {
		for i, s := range sites {
			if s.c == nil {
				continue
			}
			for _, st := range s.c.ShardStatuses() {
				if st.Shard == shard && st.IsLeader {
					return i
				}
			}
		}
		return -1
	}
	next := 0
	propose := func(shard int) string {
		t.Helper()
		next++
		data := fmt.Sprintf("e%d", next)
		var l int
		wait.For(t, 10*time.Second, "the leader takes a proposal", func() bool {
			l = leaderOf(shard)
			return l >= 0 && machines[l].replica(shard).Propose([]byte(data)) == nil
		})
		wait.For(t, 10*time.Second, "the entry applied on the leader", func() bool {
			e := machines[l].entries(shard)
			return len(e) > 0 && strings.HasSuffix(e[len(e)-1], ":"+data)
		})
		return data
	}

	began := time.Now()
	if err := sites[1].c.SetReplicas(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
	// Restart the second site once its first add is claimed: it resumes.
	wait.For(t, 10*time.Second, "an add claimed by the second site", func() bool { return len(sites[1].c.Claimed()) > 0 })
	addr := sites[1].addr
	sites[1].stop()
	sites[1].start(t, opts(1, ""), addr)
	wait.For(t, 20*time.Second, "every shard on three replicas, no transition left", settled(3))
	t.Logf("set-replicas from 1 site to 3, %d shards: %v", nShards, time.Since(began).Round(time.Millisecond))
	for shard := range nShards {
		propose(shard)
		wait.For(t, 10*time.Second, "the same entries on the three replicas", func() bool {
			a := machines[0].entries(shard)
			return len(a) > 0 && slices.Equal(a, machines[1].entries(shard)) && slices.Equal(a, machines[2].entries(shard))
		})
	}
	if got := sites[2].c.ReplicaSites(); !slices.Equal(got, ids) {
		t.Fatalf("replica sites %v", got)
	}

	// The first site, which leads the groups, leaves.
	for shard := range nShards {
		if l := leaderOf(shard); l != 0 {
			t.Fatalf("shard %d led by site %d, want the first (it started the group)", shard, l)
		}
	}
	began = time.Now()
	if err := sites[0].c.SetReplicas(context.Background(), ids[1:]); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 20*time.Second, "every shard on two replicas", settled(2))
	t.Logf("leave of the leading site: %v", time.Since(began).Round(time.Millisecond))
	for shard := range nShards {
		if r := replicas(0, shard); slices.Contains(r, ids[0]) {
			t.Fatalf("shard %d still on the site that left: %v", shard, r)
		}
	}
	wait.For(t, 10*time.Second, "the site that left runs no group and deleted its shards", func() bool {
		machines[0].mu.Lock()
		resets := machines[0].resets
		machines[0].mu.Unlock()
		return len(sites[0].c.ShardStatuses()) == 0 && resets == nShards
	})
	for shard := range nShards {
		propose(shard)
		wait.For(t, 10*time.Second, "the same entries on the two replicas", func() bool {
			a := machines[1].entries(shard)
			return len(a) > 0 && slices.Equal(a, machines[2].entries(shard))
		})
	}

	// A learner that no transition adds (an addition dropped by a new
	// set-replicas) is removed by the leader.
	l := leaderOf(0)
	g := sites[l].c.shardGroup(ShardGroup(0))
	stray, _ := meta.NodeID(ids[0])
	learner := func() bool { _, ok := g.node.Load().Status().Config.Learners[stray]; return ok }
	sites[l].c.holdTransitions.Store(true)
	typ := pb.ConfChangeAddLearnerNode
	if err := g.node.Load().ProposeConfChange(context.Background(), &pb.ConfChange{Type: &typ, NodeId: &stray}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "a learner no transition adds", learner)
	sites[l].c.holdTransitions.Store(false)
	sites[l].c.metaApplied()
	wait.For(t, 10*time.Second, "the stray learner removed", func() bool { return !learner() })
}
