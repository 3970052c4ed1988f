package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestReplicatedShardFailover: three dsd processes, replication factor 3.
// Stores to a shard's leader are acked once a quorum has its entry; a
// follower refuses with the leader's address; a session opened through the
// leader survives its loss; the leader is killed with SIGKILL while
// publishers keep storing (each Store retried, with its producer sequence
// numbers, against the site the refusals name) and another site takes
// over with every acked message (lost = 0); the killed site restarts on
// its data dir and catches up from the log; then the second leader is
// killed too, and the restarted site and the third elect a leader that
// has every acked message.
func TestReplicatedShardFailover(t *testing.T) {
	const nShards, shard, publishers, perPublisher = 2, 1, 4, 60
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sites := startReplicatedSites(t, ctx, nShards)
	addrs := httpAddrs(sites)
	dumpLogs := func() {
		for i, d := range sites {
			t.Logf("site %d log:\n%s", i, tail(d.Log(), 40))
		}
	}
	var leader int
	if !wait.Until(20*time.Second, func() bool { leader = shardLeader(addrs, shard); return leader >= 0 }) {
		dumpLogs()
		t.Fatalf("no leader of shard %d", shard)
	}
	t.Logf("shard %d led by site %d, %v after the first start", shard, leader, time.Since(began).Round(time.Millisecond))
	pubs := newShardPublishers(t, sites, shard, leader)

	// A follower refuses, naming the leader's address (once it knows it).
	follower := (leader + 1) % 3
	wait.For(t, 10*time.Second, "the follower knows the leader", func() bool {
		v, ok := shardMetric(addrs[follower], "has_leader", shard)
		return ok && v == 1
	})
	_, err := pubs.clients[follower].Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: clientsOfShard(shard, nShards, 1)[0],
		Messages: []*storagev1.Message{{Topic: "t/x", Payload: []byte("x"), Qos: 1}}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), sites[leader].GRPCAddr) {
		t.Fatalf("Store on a follower: %v, want Unavailable naming %s", err, sites[leader].GRPCAddr)
	}
	if _, err := readShard(ctx, pubs.clients[follower], shard); status.Code(err) != codes.Unavailable {
		t.Fatalf("read on a follower: %v, want Unavailable", err)
	}
	// A session of the shard, opened and subscribed through the leader; a
	// follower refuses to open one.
	sessionClient := clientsOfShard(shard, nShards, publishers+1)[publishers]
	sessions := func(i int) dsdv1.SessionServiceClient {
		conn, err := grpc.NewClient(sites[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return dsdv1.NewSessionServiceClient(conn)
	}
	openReq := &dsdv1.OpenSessionRequest{ClientId: sessionClient, ProtocolVersion: 5, ExpiryIntervalS: 3600, GatewayId: "gw", GatewayEpoch: 1}
	if _, err := sessions(follower).OpenSession(ctx, openReq); status.Code(err) != codes.Unavailable {
		t.Fatalf("OpenSession on a follower: %v, want Unavailable", err)
	}
	opened, err := sessions(leader).OpenSession(ctx, openReq)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sessions(leader).CommitSession(ctx, &dsdv1.CommitSessionRequest{Commit: &storagev1.SessionCommit{ClientId: sessionClient, Guard: opened.GetGuard(),
		PutStates:        []*storagev1.SubscriptionState{{Id: 2, SubscriptionId: 1, TopicFilter: "t/#", Qos: 1}},
		PutSubscriptions: []*storagev1.Subscription{{Id: 1, TopicFilter: "t/#", CurrentState: 2}},
	}}); err != nil {
		t.Fatal(err)
	}

	// Publishers store in sequence, each Store retried until it is acked.
	var wg sync.WaitGroup
	for _, cid := range clientsOfShard(shard, nShards, publishers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; seq <= perPublisher; seq++ {
				pubs.store(ctx, cid, seq)
			}
		}()
	}
	// Kill the leader once a third of the Stores are acked.
	wait.For(t, 20*time.Second, "a third of the Stores acked", pubs.ackedAtLeast(publishers*perPublisher/3))
	killedAt := time.Now()
	sites[leader].Kill()
	ackedAtKill := pubs.ackedCount()
	var newLeader int
	if !wait.Until(15*time.Second, func() bool { newLeader = shardLeader(addrs, shard); return newLeader >= 0 && newLeader != leader }) {
		dumpLogs()
		t.Fatal("no new leader after the SIGKILL")
	}
	t.Logf("SIGKILL of the leader (site %d, %d Stores acked) to a new leader (site %d): %v", leader, ackedAtKill, newLeader, time.Since(killedAt).Round(time.Millisecond))
	wg.Wait()
	t.Logf("every Store acked: %d, %d refused or failed attempts retried; %v after the kill", pubs.ackedCount(), pubs.retries, time.Since(killedAt).Round(time.Millisecond))
	if pubs.ackedCount() != publishers*perPublisher {
		t.Fatalf("%d of %d Stores acked", pubs.ackedCount(), publishers*perPublisher)
	}

	// Every acked message is readable from the new leader, once each.
	read, lost, dup := pubs.check(ctx, newLeader)
	t.Logf("read from the new leader: %d messages; lost %d, stored more than once %d", read, lost, dup)
	if lost != 0 || dup != 0 || read != pubs.ackedCount() {
		t.Fatalf("lost %d, duplicated %d, read %d of %d acked", lost, dup, read, pubs.ackedCount())
	}
	// The session is on the new leader, which takes it over.
	sess, err := sessions(newLeader).GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: sessionClient})
	if err != nil || len(sess.GetSession().GetSubscriptions()) != 1 || sess.GetSession().GetRecord().GetGuard() != opened.GetGuard() {
		t.Fatalf("the session on the new leader: %v %v", sess, err)
	}
	openReq.GatewayEpoch = 2
	resumed, err := sessions(newLeader).OpenSession(ctx, openReq)
	if err != nil || !resumed.GetSessionPresent() || !resumed.GetTakenOver() || resumed.GetGuard() <= opened.GetGuard() {
		t.Fatalf("resuming the session on the new leader: %v %v", resumed, err)
	}

	// The killed site restarts on its data dir and catches up from the log.
	restartAt := time.Now()
	commit := restartAndCatchUp(t, ctx, sites, leader, newLeader, shard)
	t.Logf("restart to the restarted site applying up to the leader's commit index %v: %v", commit, time.Since(restartAt).Round(time.Millisecond))
	// It follows at first: the shard goes back to it (its preferred
	// leader) only once it has been heard from for 5 s (dsd/cluster
	// leaders.go), which the rest of the test does not need.
	if v, ok := shardMetric(addrs[leader], "is_leader", shard); !ok || v != 0 {
		t.Logf("the restarted site leads the shard again (%v %v), %v after its restart", v, ok, time.Since(restartAt).Round(time.Millisecond))
	}

	// Kill the second leader too: the restarted site and the third form
	// the majority, elect a leader, and it has every acked message.
	sites[newLeader].Kill()
	var last int
	if !wait.Until(15*time.Second, func() bool { last = shardLeader(addrs, shard); return last >= 0 && last != newLeader }) {
		dumpLogs()
		t.Fatal("no leader after the second SIGKILL")
	}
	read, lost, dup = pubs.check(ctx, last)
	t.Logf("after a SIGKILL of the second leader, site %d (the restarted site: %v) leads and reads %d messages, lost %d", last, last == leader, read, lost)
	if lost != 0 || dup != 0 || read != pubs.ackedCount() {
		t.Fatalf("after the second SIGKILL: lost %d, duplicated %d, read %d of %d", lost, dup, read, pubs.ackedCount())
	}
	t.Logf("whole test: %v", time.Since(began).Round(time.Millisecond))
}

// startReplicatedSites starts three dsd processes that form a cluster with
// n_sites 3 and replication factor 3 (every shard on all three); they are
// stopped at the end of the test.
func startReplicatedSites(t *testing.T, ctx context.Context, nShards int) []*DSD {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "strata.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("durable_storage.messages.n_shards = %d\ndurable_storage.messages.n_sites = 3\ndurable_storage.messages.replication_factor = 3\n", nShards)), 0o644); err != nil {
		t.Fatal(err)
	}
	sites := make([]*DSD, 0, 3)
	t.Cleanup(func() {
		for _, d := range sites {
			_ = d.Stop(10 * time.Second)
		}
	})
	for i := range 3 {
		cfg := DSDConfig{DataDir: filepath.Join(dir, fmt.Sprintf("site%d", i)), ConfigFile: conf}
		if i > 0 {
			cfg.Join = sites[0].GRPCAddr
		}
		d, err := StartDSD(ctx, bins, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, d)
	}
	return sites
}

// restartAndCatchUp restarts the killed site i on its data dir and
// addresses and waits until it has applied shard's log up to the commit
// index of site lead at the restart, which it returns.
func restartAndCatchUp(t *testing.T, ctx context.Context, sites []*DSD, i, lead, shard int) float64 {
	t.Helper()
	commit, ok := shardMetric(sites[lead].HTTPAddr, "commit_index", shard)
	if !ok {
		t.Fatalf("site %d has no commit index gauge", lead)
	}
	restarted, err := sites[i].KillAndRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sites[i] = restarted
	if !wait.Until(15*time.Second, func() bool {
		applied, ok := shardMetric(restarted.HTTPAddr, "applied_index", shard)
		return ok && applied >= commit
	}) {
		t.Fatalf("the restarted site did not apply the log up to %v:\n%s", commit, tail(restarted.Log(), 40))
	}
	return commit
}

// TestReplicatedShardChurn: the leader of a replicated shard is killed
// with SIGKILL and restarted, round after round (3 rounds; 15 under `make
// torture`), while publishers keep storing; every round a new leader takes
// over and the restarted site catches up from the log; in the end every
// acked message is on the leader, once (lost = 0).
func TestReplicatedShardChurn(t *testing.T) {
	const nShards, shard, publishers = 1, 0, 3
	rounds := 3
	if testutil.Torture() {
		rounds = 15
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds)*20*time.Second)
	defer cancel()
	sites := startReplicatedSites(t, ctx, nShards)
	addrs := httpAddrs(sites)
	var leader int
	wait.For(t, 20*time.Second, "a leader of the shard", func() bool { leader = shardLeader(addrs, shard); return leader >= 0 })
	pubs := newShardPublishers(t, sites, shard, leader)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, cid := range clientsOfShard(shard, nShards, publishers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				pubs.store(ctx, cid, seq)
			}
		}()
	}
	for r := range rounds {
		wait.For(t, 20*time.Second, "Stores acked under the current leader", pubs.ackedAtLeast(pubs.ackedCount()+30))
		killedAt := time.Now()
		sites[leader].Kill()
		var next int
		wait.For(t, 15*time.Second, "a new leader", func() bool { next = shardLeader(addrs, shard); return next >= 0 && next != leader })
		elected := time.Since(killedAt)
		commit := restartAndCatchUp(t, ctx, sites, leader, next, shard)
		t.Logf("round %d: site %d killed, site %d leads after %v; the killed site restarted and applied up to %v; %d Stores acked so far",
			r+1, leader, next, elected.Round(time.Millisecond), commit, pubs.ackedCount())
		leader = next
	}
	wait.For(t, 20*time.Second, "Stores acked after the last round", pubs.ackedAtLeast(pubs.ackedCount()+30))
	close(stop)
	wg.Wait()
	read, lost, dup := pubs.check(ctx, leader)
	t.Logf("%d rounds, %d Stores acked (%d attempts retried); read from the leader %d, lost %d, stored more than once %d",
		rounds, pubs.ackedCount(), pubs.retries, read, lost, dup)
	for i, a := range addrs {
		first, _ := shardMetric(a, "first_index", shard)
		commit, _ := shardMetric(a, "commit_index", shard)
		t.Logf("site %d: log from %v to commit %v (truncated every 1,000 entries)", i, first, commit)
	}
	if lost != 0 || dup != 0 || read != pubs.ackedCount() {
		t.Fatalf("lost %d, duplicated %d, read %d of %d acked", lost, dup, read, pubs.ackedCount())
	}
}
