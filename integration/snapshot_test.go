package integration

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/storage"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

var snapshotInstalledRE = regexp.MustCompile(`msg="shard snapshot installed".*`)

// TestReplicatedShardSnapshot: three dsd processes, replication factor 3,
// publishers storing without pause. A follower is killed with SIGKILL; the
// two others go on and truncate their logs past everything it has (a
// replica that is down no longer holds truncation back); restarted on its
// data dir, it is sent a snapshot, fetches the shard's state from the
// leader, installs it and follows the log again. Nothing acked is lost,
// and once the Stores stop the three replicas hold the same bytes: every
// key of the shard, read from each data dir after the sites stop.
func TestReplicatedShardSnapshot(t *testing.T) {
	const nShards, shard, publishers = 1, 0, 8
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sites := startReplicatedSites(t, ctx, nShards)
	addrs := httpAddrs(sites)
	var leader int
	wait.For(t, 20*time.Second, "a leader of the shard", func() bool { leader = shardLeader(addrs, shard); return leader >= 0 })
	pubs := newShardPublishers(t, sites, shard, leader)
	stopPublishers := keepStoring(ctx, pubs, clientsOfShard(shard, nShards, publishers))
	defer stopPublishers()
	metric := func(i int, name string) float64 {
		v, _ := shardMetric(addrs[i], name, shard)
		return v
	}

	wait.For(t, 20*time.Second, "Stores acked", pubs.ackedAtLeast(200))
	f := (leader + 1) % 3
	sites[f].Kill()
	killedAt := time.Now()
	// Every entry the killed site may have is below the leader's commit
	// index once Stores proposed after the kill are acked.
	wait.For(t, 20*time.Second, "Stores acked after the kill", pubs.ackedAtLeast(pubs.ackedCount()+50))
	had := metric(leader, "commit_index")
	if !wait.Until(90*time.Second, func() bool {
		return metric(leader, "first_index") > had+1 && metric((f+2)%3, "first_index") > had+1
	}) {
		t.Fatalf("the log was not truncated past %v (first index %v on the leader) within 90s of the kill:\n%s", had, metric(leader, "first_index"), tail(sites[leader].Log(), 30))
	}
	t.Logf("site %d killed with the leader's commit index at most %v; %v later the others' logs start at %v and %v; %d Stores acked",
		f, had, time.Since(killedAt).Round(time.Millisecond), metric(leader, "first_index"), metric((f+2)%3, "first_index"), pubs.ackedCount())

	restartAt := time.Now()
	restarted, err := sites[f].KillAndRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sites[f] = restarted
	commit := metric(leader, "commit_index")
	if !wait.Until(60*time.Second, func() bool {
		return metric(f, "snapshots_installed_total") >= 1 && metric(f, "applied_index") >= commit
	}) {
		t.Fatalf("the restarted site did not catch up by a snapshot:\n%s", tail(restarted.Log(), 40))
	}
	t.Logf("restart to caught up (a snapshot, then the log up to the leader's commit index %v at the restart): %v; %s",
		commit, time.Since(restartAt).Round(time.Millisecond), snapshotInstalledRE.FindString(restarted.Log()))
	if sent := metric(leader, "snapshots_sent_total"); sent < 1 {
		t.Fatalf("the leader sent %v snapshots", sent)
	}
	wait.For(t, 20*time.Second, "Stores acked after the install", pubs.ackedAtLeast(pubs.ackedCount()+100))
	stopPublishers()
	read, lost, dup := pubs.check(ctx, leader)
	t.Logf("%d Stores acked (%d attempts retried); read from the leader %d, lost %d, stored more than once %d", pubs.ackedCount(), pubs.retries, read, lost, dup)
	if lost != 0 || dup != 0 || read != pubs.ackedCount() {
		t.Fatalf("lost %d, duplicated %d, read %d of %d acked", lost, dup, read, pubs.ackedCount())
	}

	// Byte for byte: once every replica applied the leader's last commit
	// (unchanged over two looks), the sites stop, the leader first, and
	// each data dir's shard is read whole.
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
	var want []byte
	var wantApplied uint64
	for i, d := range sites {
		applied, state := shardBytes(t, d.DataDir, nShards, shard)
		if i == 0 {
			want, wantApplied = state, applied
			t.Logf("shard %d: %d bytes of state at index %d", shard, len(state), applied)
			continue
		}
		if diff := diffPairs(t, want, state); applied != wantApplied || diff != "" {
			t.Fatalf("site %d holds %d bytes at index %d, site 0 %d bytes at %d; differing keys:\n%s", i, len(state), applied, len(want), wantApplied, diff)
		}
	}
}

// shardBytes reads a stopped site's shard whole, as a snapshot streams it.
func shardBytes(t *testing.T, dataDir string, nShards, shard int) (uint64, []byte) {
	t.Helper()
	db, err := storage.Open(storage.Options{DataDir: dataDir, NShards: nShards, IdleTickInterval: time.Hour, SessionGCInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()
	snap, err := db.OpenShardSnapshot(shard)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var out []byte
	for {
		var last bool
		out, last, err = snap.NextChunk(out, len(out)+1<<20)
		if err != nil {
			t.Fatal(fmt.Errorf("read %s: %w", dataDir, err))
		}
		if last {
			return snap.Applied(), out
		}
	}
}

// diffPairs lists the keys whose values differ between two shard states.
// The first generation's record is written by each site when it creates
// the shard, with its own clock as created_at (docs/replication.md): that
// field alone may differ.
func diffPairs(t *testing.T, a, b []byte) string {
	t.Helper()
	pairs := func(c []byte) map[string]string {
		m := map[string]string{}
		if err := storage.DecodeSnapshotChunk(c, func(k, v []byte) error { m[string(k)] = string(v); return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	pa, pb := pairs(a), pairs(b)
	var out bytes.Buffer
	firstGen := string([]byte{0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1})
	for _, m := range []map[string]string{pa, pb} {
		g := &storagev1.Generation{}
		if v, ok := m[firstGen]; ok && len(v) > 0 && proto.Unmarshal([]byte(v[1:]), g) == nil {
			g.CreatedAtUs = 0
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(g)
			m[firstGen] = v[:1] + string(b)
		}
	}
	for k, v := range pa {
		if w, ok := pb[k]; !ok || w != v {
			fmt.Fprintf(&out, "%x: %x / %x\n", k, v, w)
		}
	}
	for k, w := range pb {
		if _, ok := pa[k]; !ok {
			fmt.Fprintf(&out, "%x: (none) / %x\n", k, w)
		}
	}
	return out.String()
}
