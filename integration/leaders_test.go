package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestShardLeadersSpread: three dsd processes, replication factor 3, four
// shards: each shard's preferred leader campaigns first, so every site
// leads at least one shard from the start (rather than whichever site
// campaigned first leading them all). The site leading shard 0 is killed
// with SIGKILL: the others take its shards; restarted on its data dir, it
// is handed its shards back once caught up and heard from for 5 s
// (dsd/cluster leaders.go).
func TestShardLeadersSpread(t *testing.T) {
	const nShards = 4
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sites := startReplicatedSites(t, ctx, nShards)
	addrs := httpAddrs(sites)
	leaders := func() []int {
		out := make([]int, nShards)
		for sh := range nShards {
			out[sh] = shardLeader(addrs, sh)
		}
		return out
	}
	// spread: every shard has a leader and every site leads one.
	spread := func(lead []int) bool {
		if slices.Contains(lead, -1) {
			return false
		}
		for i := range sites {
			if !slices.Contains(lead, i) {
				return false
			}
		}
		return true
	}
	var lead []int
	if !wait.Until(30*time.Second, func() bool { lead = leaders(); return spread(lead) }) {
		for i, d := range sites {
			t.Logf("site %d log:\n%s", i, tail(d.Log(), 30))
		}
		t.Fatalf("shard leaders %v: not every site leads a shard", lead)
	}
	t.Logf("shard leaders %v, %v after the first start", lead, time.Since(began).Round(time.Millisecond))

	victim := lead[0]
	sites[victim].Kill()
	if !wait.Until(30*time.Second, func() bool {
		lead = leaders()
		return !slices.Contains(lead, -1) && !slices.Contains(lead, victim)
	}) {
		t.Fatalf("shard leaders %v after the SIGKILL of site %d", lead, victim)
	}
	t.Logf("after the SIGKILL of site %d: leaders %v", victim, lead)
	restartAt := time.Now()
	restarted, err := sites[victim].KillAndRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sites[victim] = restarted
	if !wait.Until(30*time.Second, func() bool { lead = leaders(); return spread(lead) }) {
		t.Fatalf("shard leaders %v: site %d, restarted, leads no shard again:\n%s", lead, victim, tail(restarted.Log(), 30))
	}
	t.Logf("restart of site %d to its leading a shard again: %v; leaders %v", victim, time.Since(restartAt).Round(time.Millisecond), lead)
}
