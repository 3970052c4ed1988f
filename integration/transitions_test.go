package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestSetReplicasUnderLoad: one dsd (n_sites = 1, replication_factor = 3)
// allocates its shards alone; two more join. Publishers store into every
// shard without pause while `dstool set-replicas` moves every shard from
// the one site to all three (the lone replica starts a group from its
// state, the two others join as learners, catch up by a snapshot and are
// promoted), then while the first site, which leads every shard, leaves
// (REST DELETE /ds/storages/messages/replicas/{site}): it hands leadership
// over, its replicas are removed and it holds none after. Every Store is
// retried until acked, at the site the refusals name: lost = 0 and no
// duplicate in any shard.
func TestSetReplicasUnderLoad(t *testing.T) {
	const nShards, perShard = 2, 4
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sites, ids := startSitesAlone(t, ctx, 3, nShards)
	first := ids[0]

	load := storeOnAllShards(t, ctx, sites, nShards, perShard)
	pubs, stopPublishers, acked, ackedMore := load.pubs, load.stop, load.acked, load.ackedMore
	defer stopPublishers()
	// settled: every shard on want sites (none of them without), no
	// transition left, as site i sees it.
	settled := func(i, want int, without string) func() bool {
		return func() bool {
			v, ok := clusterView(t, sites[i])
			if !ok {
				return false
			}
			for _, s := range v.Shards {
				if len(s.Replicas) != want || len(s.Transitions) != 0 || slices.Contains(s.Replicas, without) {
					return false
				}
			}
			return true
		}
	}
	wait.For(t, 20*time.Second, "Stores acked on the lone site", ackedMore(200))

	began := time.Now()
	var res struct {
		Sites       []string `json:"sites"`
		Transitions int      `json:"transitions"`
	}
	out := dstool(t, sites[1].GRPCAddr, append([]string{"set-replicas", "--json"}, ids...)...)
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Sites) != 3 || res.Transitions != 2*nShards {
		t.Fatalf("dstool set-replicas --json: %v\n%s", err, out)
	}
	if !wait.Until(90*time.Second, settled(0, 3, "")) {
		t.Fatalf("the shards did not move to three sites:\n%s\n%s", tail(sites[0].Log(), 30), tail(sites[1].Log(), 30))
	}
	t.Logf("set-replicas from 1 site to 3 under load, %d shards: %v; %d Stores acked", nShards, time.Since(began).Round(time.Millisecond), acked())
	wait.For(t, 20*time.Second, "Stores acked on three replicas", ackedMore(200))

	// The first site, which leads every shard, leaves.
	began = time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+sites[1].HTTPAddr+"/ds/storages/messages/replicas/"+first, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /ds/storages/messages/replicas/%s: %s", first, resp.Status)
	}
	if !wait.Until(90*time.Second, settled(1, 2, first)) {
		t.Fatalf("the first site was not drained:\n%s\n%s", tail(sites[0].Log(), 30), tail(sites[1].Log(), 30))
	}
	t.Logf("leave of the site leading every shard, under load: %v; %d Stores acked", time.Since(began).Round(time.Millisecond), acked())
	var left struct {
		Shards []json.RawMessage `json:"shards"`
	}
	wait.For(t, 20*time.Second, "the site that left holds no shard and runs no group", func() bool {
		if err := json.Unmarshal([]byte(httpBody(t, "http://"+sites[1].HTTPAddr+"/ds/sites/"+first)), &left); err != nil || len(left.Shards) != 0 {
			return false
		}
		_, running := shardMetric(sites[0].HTTPAddr, "running", 0)
		return !running
	})
	wait.For(t, 20*time.Second, "Stores acked after the leave", ackedMore(200))
	stopPublishers()
	for shard, p := range pubs {
		var l int
		wait.For(t, 20*time.Second, "a leader", func() bool { l = shardLeader(httpAddrs(sites), shard); return l >= 0 })
		read, lost, dup := p.check(ctx, l)
		t.Logf("shard %d: %d Stores acked (%d attempts retried); read from its leader (site %d) %d, lost %d, stored more than once %d",
			shard, p.ackedCount(), p.retries, l, read, lost, dup)
		if lost != 0 || dup != 0 || read != p.ackedCount() {
			t.Fatalf("shard %d: lost %d, duplicated %d, read %d of %d acked", shard, lost, dup, read, p.ackedCount())
		}
	}
}

// TestWipedSiteReplaced: three dsd processes, replication factor 3,
// publishers storing without pause. One site is killed and its data dir
// wiped; the others truncate their logs meanwhile. Started again on the
// empty dir it is a new site, which joins. `dstool set-replicas` over the
// two survivors and the new site removes the lost site from every shard
// (first: it is down) and adds the new one, which catches up by a
// snapshot. Nothing acked is lost, and the new site's shard holds the same
// bytes as the others' once the Stores stop.
func TestWipedSiteReplaced(t *testing.T) {
	const nShards, shard, publishers = 1, 0, 4
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sites := startReplicatedSites(t, ctx, nShards)
	addrs := httpAddrs(sites)
	var leader int
	wait.For(t, 20*time.Second, "a leader of the shard", func() bool { leader = shardLeader(addrs, shard); return leader >= 0 })
	pubs := newShardPublishers(t, sites, shard, leader)
	stopPublishers := keepStoring(ctx, pubs, clientsOfShard(shard, nShards, publishers))
	defer stopPublishers()
	wait.For(t, 20*time.Second, "Stores acked", pubs.ackedAtLeast(200))

	w := (leader + 1) % 3
	old, ok := clusterView(t, sites[w])
	if !ok {
		t.Fatal("no view of the site to wipe")
	}
	sites[w].Kill()
	if err := os.RemoveAll(sites[w].DataDir); err != nil {
		t.Fatal(err)
	}
	// The log truncated: the new site cannot replay it from the start.
	if !wait.Until(90*time.Second, func() bool {
		v, ok := shardMetric(addrs[leader], "first_index", shard)
		return ok && v > 1
	}) {
		t.Fatal("the leader's log was not truncated with a site down")
	}
	began := time.Now()
	cfg := sites[w].cfg
	cfg.GRPCListen, cfg.HTTPListen = sites[w].GRPCAddr, sites[w].HTTPAddr
	cfg.Join = sites[leader].GRPCAddr
	fresh, err := StartDSD(ctx, bins, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sites[w] = fresh
	var view siteInfo
	wait.For(t, 20*time.Second, "the wiped site joins as a new site", func() bool {
		view, ok = clusterView(t, fresh)
		return ok && view.Site != old.Site && len(view.Sites) == 4
	})
	var keep []string
	for i, d := range sites {
		if i != w {
			v, _ := clusterView(t, d)
			keep = append(keep, v.Site)
		}
	}
	dstool(t, sites[leader].GRPCAddr, append([]string{"set-replicas"}, append(keep, view.Site)...)...)
	if !wait.Until(60*time.Second, func() bool {
		v, ok := clusterView(t, sites[leader])
		if !ok || len(v.Shards) != nShards {
			return false
		}
		s := v.Shards[0]
		return len(s.Transitions) == 0 && len(s.Replicas) == 3 && slices.Contains(s.Replicas, view.Site) && !slices.Contains(s.Replicas, old.Site)
	}) {
		t.Fatalf("the lost site was not replaced:\n%s", tail(fresh.Log(), 30))
	}
	t.Logf("wiped site back as %s; %v from its start to the shard on it (the lost %s removed): %s",
		view.Site, time.Since(began).Round(time.Millisecond), old.Site, snapshotInstalledRE.FindString(fresh.Log()))
	if n, _ := shardMetric(fresh.HTTPAddr, "snapshots_installed_total", shard); n < 1 {
		t.Fatalf("the new site installed %v snapshots, want one", n)
	}
	wait.For(t, 20*time.Second, "Stores acked after the replacement", pubs.ackedAtLeast(pubs.ackedCount()+200))
	stopPublishers()
	leader = shardLeader(addrs, shard)
	read, lost, dup := pubs.check(ctx, leader)
	t.Logf("%d Stores acked (%d attempts retried); read from the leader %d, lost %d, stored more than once %d", pubs.ackedCount(), pubs.retries, read, lost, dup)
	if lost != 0 || dup != 0 || read != pubs.ackedCount() {
		t.Fatalf("lost %d, duplicated %d, read %d of %d acked", lost, dup, read, pubs.ackedCount())
	}
	metric := func(i int, name string) float64 {
		v, _ := shardMetric(addrs[i], name, shard)
		return v
	}
	last := -1.0
	wait.For(t, 20*time.Second, "every replica applied the same, last entry", func() bool {
		c := metric(leader, "commit_index")
		same := c == last && metric(0, "applied_index") == c && metric(1, "applied_index") == c && metric(2, "applied_index") == c
		last = c
		return same
	})
	for _, i := range []int{leader, (leader + 1) % 3, (leader + 2) % 3} {
		if err := sites[i].Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_, want := shardBytes(t, sites[leader].DataDir, nShards, shard)
	if _, got := shardBytes(t, fresh.DataDir, nShards, shard); diffPairs(t, want, got) != "" {
		t.Fatalf("the new site's shard differs from the leader's:\n%s", diffPairs(t, want, got))
	}
}

// TestTransitionsChurn: four dsd processes (n_sites = 1, replication
// factor 3), publishers storing into every shard without pause. The shards
// move from the first site to three, then, round after round, to another
// three of the four (one addition and one removal per shard), while a
// site is SIGKILLed right after each set-replicas and restarted once more
// Stores are acked (3 rounds; 8 under `make torture`). Every round
// converges (no transition left, every shard on the three sites asked
// for), and in the end every acked Store is in its shard, once.
func TestTransitionsChurn(t *testing.T) {
	const nShards, perShard, nSites = 2, 3, 4
	rounds := 3
	if testutil.Torture() {
		rounds = 8
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds+2)*time.Minute)
	defer cancel()
	sites, ids := startSitesAlone(t, ctx, nSites, nShards)
	load := storeOnAllShards(t, ctx, sites, nShards, perShard)
	pubs, stopPublishers, acked, ackedMore := load.pubs, load.stop, load.acked, load.ackedMore
	defer stopPublishers()
	// moveTo sets the replica sites to all but site out, through site via,
	// and waits until every live site's view shows it done.
	moveTo := func(out, via int, kill int) time.Duration {
		t.Helper()
		var want []string
		for i, id := range ids {
			if i != out {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		began := time.Now()
		dstool(t, sites[via].GRPCAddr, append([]string{"set-replicas"}, want...)...)
		if kill >= 0 {
			sites[kill].Kill()
			wait.For(t, 30*time.Second, "Stores acked with a site killed", ackedMore(50))
			restarted, err := sites[kill].KillAndRestart(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sites[kill] = restarted
		}
		if !wait.Until(90*time.Second, func() bool {
			v, ok := clusterView(t, sites[via])
			if !ok {
				return false
			}
			for _, s := range v.Shards {
				r := slices.Clone(s.Replicas)
				slices.Sort(r)
				if len(s.Transitions) != 0 || !slices.Equal(r, want) {
					return false
				}
			}
			return true
		}) {
			v, _ := clusterView(t, sites[via])
			t.Fatalf("the shards did not move to %v: %+v\n%s", want, v.Shards, tail(sites[via].Log(), 30))
		}
		return time.Since(began)
	}
	wait.For(t, 20*time.Second, "Stores acked", ackedMore(100))
	t.Logf("from 1 site to 3: %v", moveTo(3, 1, -1).Round(time.Millisecond))
	for r := range rounds {
		out, kill, via := r%nSites, (r+1)%nSites, (r+2)%nSites
		took := moveTo(out, via, kill)
		t.Logf("round %d: replicas move off site %d (site %d SIGKILLed and restarted meanwhile): %v; %d Stores acked",
			r+1, out, kill, took.Round(time.Millisecond), acked())
		wait.For(t, 30*time.Second, "Stores acked after the round", ackedMore(100))
	}
	stopPublishers()
	for shard, p := range pubs {
		var l int
		wait.For(t, 20*time.Second, "a leader", func() bool { l = shardLeader(httpAddrs(sites), shard); return l >= 0 })
		read, lost, dup := p.check(ctx, l)
		t.Logf("shard %d: %d Stores acked (%d attempts retried); read from its leader %d, lost %d, stored more than once %d",
			shard, p.ackedCount(), p.retries, read, lost, dup)
		if lost != 0 || dup != 0 || read != p.ackedCount() {
			t.Fatalf("shard %d: lost %d, duplicated %d, read %d of %d acked", shard, lost, dup, read, p.ackedCount())
		}
	}
}
