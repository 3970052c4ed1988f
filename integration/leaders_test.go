package integration

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	leaders := func() []int { return shardLeaders(sites, nShards) }
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
	lead = waitLed(t, sites, nShards, victim, 30*time.Second)
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

var handoverRE = regexp.MustCompile(`msg="shard group hands leadership to its preferred replica" .*?shard=(\d+)`)

// handovers counts, per shard, the leadership transfers to the shard's
// preferred replica that the sites logged: each moves the shard's term by
// one, by design.
func handovers(sites []*DSD) map[int]int {
	out := map[int]int{}
	for _, d := range sites {
		for _, m := range handoverRE.FindAllStringSubmatch(d.Log(), -1) {
			shard, _ := strconv.Atoi(m[1])
			out[shard]++
		}
	}
	return out
}

// groupTermsOf are the highest terms of every group (metaGroup: the
// metadata group) that the sites know.
func groupTermsOf(sites []*DSD) map[int]uint64 {
	out := map[int]uint64{}
	for _, d := range sites {
		for g, s := range shardStates(d.HTTPAddr) {
			out[g] = max(out[g], s.term)
		}
	}
	return out
}

// elections counts the terms every group moved since terms and handed
// (taken together earlier) other than by handovers: the elections.
func elections(sites []*DSD, terms map[int]uint64, handed map[int]int) int {
	n, now := 0, handovers(sites)
	for g, term := range groupTermsOf(sites) {
		if t, ok := terms[g]; ok && term > t {
			n += max(0, int(term-t)-(now[g]-handed[g]))
		}
	}
	return n
}

// TestShardLeadersStableUnderLoad: three dsd processes (RF 3, four shards
// spread over them) and a gateway given all three, under as much MQTT load
// as the machine takes (24 publishers at QoS 1 and 2, each sending the
// next message when the last is acked; two durable subscribers) for 15 s:
// no group has an election. An election without a failure would be a
// leader whose heartbeats did not fit in the election timeout (dsd/cluster
// Options.TickInterval, ElectionTicks): the guard of those settings. The
// test logs the acks per second and the load average.
func TestShardLeadersStableUnderLoad(t *testing.T) {
	const nShards, publishers, loadFor = 4, 24, 15 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sites := startReplicatedSites(t, ctx, nShards)
	waitLed(t, sites, nShards, -1, 30*time.Second)
	gw, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: grpcAddrList(sites)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Stop(10 * time.Second) })
	addr := func() string { return gw.Addrs["tcp.default"] }

	run := newLoadRun()
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	run.subscriberAt(subCtx, "stable-sub-q1", addr, "stable/+", 1)
	run.subscriberAt(subCtx, "stable-sub-q2", addr, "stable/+", 2)
	for p := range publishers {
		run.publisher(pubCtx, fmt.Sprintf("stable-pub-%d", p), addr, byte(1+p%2), "stable/%d", 4)
	}
	wait.For(t, 30*time.Second, "the load under way", func() bool { return run.acked.Load() >= 100 })
	// Any site may still be handing a shard to its preferred leader:
	// handovers are not elections.
	terms, handed, from, ackedFrom := groupTermsOf(sites), handovers(sites), time.Now(), run.acked.Load()
	// Looked at twice a second, so as not to add to the load.
	if wait.Every(loadFor, 500*time.Millisecond, func() bool { return elections(sites, terms, handed) > 0 }) {
		t.Errorf("an election under load, %v after it started", time.Since(from).Round(time.Millisecond))
	}
	acked := run.acked.Load() - ackedFrom
	load, _ := os.ReadFile("/proc/loadavg")
	stopPubs()
	run.pubs.Wait()
	stopSubs()
	run.subs.Wait()
	t.Logf("%d publishes acked in %v (%.0f/s), %d elections; load average %s", acked, time.Since(from).Round(time.Millisecond),
		float64(acked)/time.Since(from).Seconds(), elections(sites, terms, handed), strings.TrimSpace(string(load)))
}
