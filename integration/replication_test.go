package integration

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// shardMetric reads one strata_ds_shard_raft_* gauge of shard from a dsd's
// metrics; ok is false when it does not answer or lacks the gauge.
func shardMetric(d *DSD, name string, shard int) (float64, bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.HTTPAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, false
	}
	m := regexp.MustCompile(fmt.Sprintf(`(?m)^strata_ds_shard_raft_%s\{shard="%d"\} (\S+)$`, name, shard)).FindSubmatch(b)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return v, err == nil
}

// shardLeader is the running site that says it leads shard (-1: none).
func shardLeader(sites []*DSD, shard int) int {
	for i, d := range sites {
		if v, ok := shardMetric(d, "is_leader", shard); ok && v == 1 {
			return i
		}
	}
	return -1
}

// clientsOfShard returns n client ids that dsd places in shard (FNV-1a
// modulo n_shards, as storage.ShardOf).
func clientsOfShard(shard, nShards, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("pub-%d", i)
		h := fnv.New64a()
		h.Write([]byte(id))
		if int(h.Sum64()%uint64(nShards)) == shard {
			out = append(out, id)
		}
	}
	return out
}

// readShard reads every message of one shard from the dsd at addr.
func readShard(ctx context.Context, c *client.Client, shard int) ([]*dsdv1.StoredMessage, error) {
	sh := uint32(shard)
	streams, err := c.Storage.GetStreams(ctx, &dsdv1.GetStreamsRequest{TopicFilter: "#", Shard: &sh})
	if err != nil {
		return nil, err
	}
	var out []*dsdv1.StoredMessage
	for _, st := range streams.GetStreams() {
		it, err := c.Storage.MakeIterator(ctx, &dsdv1.MakeIteratorRequest{Stream: st, TopicFilter: "#"})
		if err != nil {
			return nil, err
		}
		iter := it.GetIterator()
		for {
			res, err := c.Storage.Next(ctx, &dsdv1.NextRequest{Iterator: iter, MaxMessages: 1000})
			if err != nil {
				return nil, err
			}
			out = append(out, res.GetMessages()...)
			iter = res.GetIterator()
			if res.GetEndOfStream() || len(res.GetMessages()) == 0 {
				break
			}
		}
	}
	return out, nil
}

// TestReplicatedShardFailover: three dsd processes, replication factor 3.
// Stores to a shard's leader are acked once a quorum has its entry; a
// follower refuses with the leader's address; a session opened through the
// leader survives its loss; the leader is killed with
// SIGKILL while publishers keep storing (each Store retried, with its
// producer sequence numbers, against the site the refusals name) and
// another site takes over with every acked message (lost = 0); the killed
// site restarts on its data dir and catches up from the log; then the
// second leader is killed too, and the restarted site and the third elect
// a leader that has every acked message.
func TestReplicatedShardFailover(t *testing.T) {
	const nShards, shard, publishers, perPublisher = 2, 1, 4, 60
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "strata.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("durable_storage.messages.n_shards = %d\ndurable_storage.messages.n_sites = 3\ndurable_storage.messages.replication_factor = 3\n", nShards)), 0o644); err != nil {
		t.Fatal(err)
	}
	var sites []*DSD
	defer func() {
		for _, d := range sites {
			_ = d.Stop(10 * time.Second)
		}
	}()
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
	clients := make([]*client.Client, 3)
	for i, d := range sites {
		c, err := client.Dial(d.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	dumpLogs := func() {
		for i, d := range sites {
			t.Logf("site %d log:\n%s", i, tail(d.Log(), 40))
		}
	}
	var leader int
	if !wait.Until(20*time.Second, func() bool { leader = shardLeader(sites, shard); return leader >= 0 }) {
		dumpLogs()
		t.Fatalf("no leader of shard %d", shard)
	}
	t.Logf("shard %d led by site %d, %v after the first start", shard, leader, time.Since(began).Round(time.Millisecond))

	// A follower refuses, naming the leader's address (once it knows it).
	follower := (leader + 1) % 3
	wait.For(t, 10*time.Second, "the follower knows the leader", func() bool {
		v, ok := shardMetric(sites[follower], "has_leader", shard)
		return ok && v == 1
	})
	_, err := clients[follower].Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: clientsOfShard(shard, nShards, 1)[0],
		Messages: []*storagev1.Message{{Topic: "t/x", Payload: []byte("x"), Qos: 1}}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), sites[leader].GRPCAddr) {
		t.Fatalf("Store on a follower: %v, want Unavailable naming %s", err, sites[leader].GRPCAddr)
	}
	if _, err := readShard(ctx, clients[follower], shard); status.Code(err) != codes.Unavailable {
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

	// Publishers store in sequence; each Store is retried until it is
	// acked, against the site the last refusal named.
	addrIndex := map[string]int{}
	for i, d := range sites {
		addrIndex[d.GRPCAddr] = i
	}
	var (
		mu       sync.Mutex
		acked    = map[string]bool{} // payloads acked (stored, or a duplicate of a stored one)
		target   = leader
		retries  int
		progress = make(chan struct{}, 1)
	)
	leaderAddr := regexp.MustCompile(`its leader is site \S+ at (\S+)`)
	store := func(cid string, seq int) {
		payload := fmt.Sprintf("%s/%d", cid, seq)
		req := &dsdv1.StoreRequest{ClientId: cid, Messages: []*storagev1.Message{{Topic: "t/" + cid, Payload: []byte(payload), Qos: 1}},
			Producer: &dsdv1.Producer{ClientId: cid, Epoch: 1, FirstSeq: uint64(seq)}}
		for ctx.Err() == nil {
			mu.Lock()
			to := target
			mu.Unlock()
			cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
			res, err := clients[to].Storage.Store(cctx, req)
			ccancel()
			if err == nil {
				if res.GetResult() != dsdv1.StoreResult_STORE_RESULT_STORED && res.GetResult() != dsdv1.StoreResult_STORE_RESULT_DUPLICATE {
					t.Errorf("Store %s: %v", payload, res.GetResult())
				}
				mu.Lock()
				acked[payload] = true
				mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
				return
			}
			mu.Lock()
			retries++
			if m := leaderAddr.FindStringSubmatch(status.Convert(err).Message()); m != nil {
				if i, ok := addrIndex[m[1]]; ok {
					target = i
				}
			} else if target == to {
				target = (to + 1) % 3 // a dead or leaderless site: try the next
			}
			mu.Unlock()
			// The election takes about a second: wait for a leader before
			// trying again.
			wait.Until(200*time.Millisecond, func() bool { return shardLeader(sites, shard) >= 0 })
		}
	}
	var wg sync.WaitGroup
	for _, cid := range clientsOfShard(shard, nShards, publishers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; seq <= perPublisher; seq++ {
				store(cid, seq)
			}
		}()
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	// Kill the leader once a third of the Stores are acked.
	wait.For(t, 20*time.Second, "a third of the Stores acked", func() bool {
		select {
		case <-progress:
		case <-time.After(100 * time.Millisecond):
		}
		return ackedCount() >= publishers*perPublisher/3
	})
	killedAt := time.Now()
	sites[leader].Kill()
	ackedAtKill := ackedCount()
	running := []*DSD{sites[(leader+1)%3], sites[(leader+2)%3]}
	var newLeader int
	if !wait.Until(15*time.Second, func() bool { newLeader = shardLeader(running, shard); return newLeader >= 0 }) {
		dumpLogs()
		t.Fatal("no new leader after the SIGKILL")
	}
	newLeader = (leader + 1 + newLeader) % 3
	t.Logf("SIGKILL of the leader (site %d, %d Stores acked) to a new leader (site %d): %v", leader, ackedAtKill, newLeader, time.Since(killedAt).Round(time.Millisecond))
	wg.Wait()
	t.Logf("every Store acked: %d, %d refused or failed attempts retried; %v after the kill", ackedCount(), retries, time.Since(killedAt).Round(time.Millisecond))
	if ackedCount() != publishers*perPublisher {
		t.Fatalf("%d of %d Stores acked", ackedCount(), publishers*perPublisher)
	}

	// Every acked message is readable from the new leader, once each.
	msgs, err := readShard(ctx, clients[newLeader], shard)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range msgs {
		seen[string(m.GetMessage().GetPayload())]++
	}
	lost, dup := 0, 0
	for p := range acked {
		switch seen[p] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	t.Logf("read from the new leader: %d messages; lost %d, stored more than once %d", len(msgs), lost, dup)
	if lost != 0 || dup != 0 || len(msgs) != len(acked) {
		t.Fatalf("lost %d, duplicated %d, read %d of %d acked", lost, dup, len(msgs), len(acked))
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
	commit, ok := shardMetric(sites[newLeader], "commit_index", shard)
	if !ok {
		t.Fatal("the new leader has no commit index gauge")
	}
	restartAt := time.Now()
	restarted, err := sites[leader].KillAndRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sites[leader] = restarted
	if !wait.Until(15*time.Second, func() bool {
		applied, ok := shardMetric(restarted, "applied_index", shard)
		return ok && applied >= commit
	}) {
		dumpLogs()
		t.Fatalf("the restarted site did not apply the log up to %v", commit)
	}
	t.Logf("restart to the restarted site applying up to the leader's commit index %v: %v", commit, time.Since(restartAt).Round(time.Millisecond))
	if v, ok := shardMetric(restarted, "is_leader", shard); !ok || v != 0 {
		t.Fatalf("the restarted site leads the shard (%v %v): it should have followed", v, ok)
	}

	// Kill the second leader too: the restarted site and the third form
	// the majority, elect a leader, and it has every acked message.
	sites[newLeader].Kill()
	third := 3 - leader - newLeader
	var last int
	if !wait.Until(15*time.Second, func() bool {
		last = shardLeader([]*DSD{sites[leader], sites[third]}, shard)
		return last >= 0
	}) {
		dumpLogs()
		t.Fatal("no leader after the second SIGKILL")
	}
	last = []int{leader, third}[last]
	c, err := client.Dial(sites[last].GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs, err = readShard(ctx, c, shard)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range msgs {
		got[string(m.GetMessage().GetPayload())] = true
	}
	lost = 0
	for p := range acked {
		if !got[p] {
			lost++
		}
	}
	t.Logf("after a SIGKILL of the second leader, site %d (the restarted site: %v) leads and reads %d messages, lost %d",
		last, last == leader, len(msgs), lost)
	if lost != 0 || len(msgs) != len(acked) {
		t.Fatalf("after the second SIGKILL: lost %d, read %d of %d", lost, len(msgs), len(acked))
	}
	t.Logf("whole test: %v", time.Since(began).Round(time.Millisecond))
}
