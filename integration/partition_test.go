package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// The partition tests: three dsd processes, replication factor 3, whose
// site-to-site traffic passes userspace TCP proxies (proxiedSites); one
// site, the leader of most shards, is cut from the other two while
// publishers keep storing with producer sequence numbers. What must hold:
// no term has two leaders; the cut-off leader acks no Store sent to it
// during the partition and stops serving reads before the others ack
// their first write; the other two elect a leader and ack; after healing
// every acked Store is stored once and every site applies the same log.

const partitionShards = 2

// partitionRound is what one partition measured.
type partitionRound struct {
	x   int // the site cut off
	how cut
	// firstAck is from the cut to the first Store acked by the other
	// sites; lastRead from the cut to the start of the last read the
	// cut-off leader served (-1: none after the cut), readsEnded to its
	// first refusal.
	firstAck, lastRead, readsEnded time.Duration
	// stepDown is from the cut to the cut-off site no longer leading any
	// shard.
	stepDown time.Duration
	// probe is the payload of a Store sent to the cut-off leader right
	// after the cut, and probeErr its answer (an ack is a failure).
	probe    string
	probeErr error
	// termsAtHeal are the terms of every group (metaGroup: the metadata
	// group) on the other two sites just before the heal.
	termsAtHeal map[int]uint64
	// handedAtHeal counts, per shard, the handovers to a preferred leader
	// logged before the heal (handovers).
	handedAtHeal map[int]int
}

// groupTerms are the highest terms of every group that the sites but
// except know.
func groupTerms(ps *proxiedSites, except int) map[int]uint64 {
	out := map[int]uint64{}
	for i, a := range ps.http {
		if i == except {
			continue
		}
		for g, s := range shardStates(a) {
			out[g] = max(out[g], s.term)
		}
	}
	return out
}

// leaderOfMost is the site leading most shards (ties: the lower shard's)
// and a shard it leads.
func leaderOfMost(w *termWatch, nShards int) (site, shard int) {
	count := map[int]int{}
	site, shard = -1, -1
	for s := range nShards {
		l := w.leaderOf(s)
		if l < 0 {
			continue
		}
		count[l]++
		if site < 0 || count[l] > count[site] {
			site, shard = l, s
		}
	}
	return site, shard
}

// runPartition cuts the leader of most shards as how says, measures, keeps
// the cut until the others acked 20 Stores and for at least hold, heals,
// and waits until the sites converge.
func runPartition(t *testing.T, ctx context.Context, ps *proxiedSites, w *termWatch, load *partitionLoad, round int, how cut, hold time.Duration) partitionRound {
	t.Helper()
	var x, shard int
	wait.For(t, 20*time.Second, "a leader of every shard", func() bool {
		for s := range partitionShards {
			if w.leaderOf(s) < 0 {
				return false
			}
		}
		x, shard = leaderOfMost(w, partitionShards)
		return x >= 0
	})
	before, _ := load.ackCount(-1, time.Now())
	wait.For(t, 20*time.Second, "Stores acked before the cut", func() bool { n, _ := load.ackCount(-1, time.Now()); return n >= before+20 })
	// The watch's view may be a scrape old: the site must lead the shard
	// now, else the measurements would be of another site.
	wait.For(t, 10*time.Second, "the leader of most shards, confirmed", func() bool {
		x, shard = leaderOfMost(w, partitionShards)
		return x >= 0 && shardStates(ps.http[x])[shard].leader
	})

	r := partitionRound{x: x, how: how, lastRead: -1}
	var led []int // the groups x leads (metaGroup: the metadata group)
	for g, s := range shardStates(ps.http[x]) {
		if s.leader {
			led = append(led, g)
		}
	}
	cutAt := time.Now()
	ps.isolate(x, how)
	var wg sync.WaitGroup
	wg.Add(3)
	// A Store sent to the cut-off leader: it cannot reach a quorum.
	go func() {
		defer wg.Done()
		cid := prefixedClientsOfShard(fmt.Sprintf("minority%d", round), shard, partitionShards, 1)[0]
		r.probe = cid + "/1"
		_, r.probeErr = load.attempt(ctx, x, storeReq(cid, 1, false), 4*time.Second)
	}()
	// Reads of the cut-off leader until it refuses.
	go func() {
		defer wg.Done()
		r.lastRead, r.readsEnded = minorityReads(ctx, load.clients[x], shard, cutAt)
	}()
	// The first Store the other two ack.
	go func() {
		defer wg.Done()
		cid := prefixedClientsOfShard(fmt.Sprintf("majority%d", round), shard, partitionShards, 1)[0]
		giveUp := make(chan struct{})
		timer := time.AfterFunc(15*time.Second, func() { close(giveUp) })
		defer timer.Stop()
		if load.store(ctx, giveUp, shard, cid, 1, false, 300*time.Millisecond, x) {
			r.firstAck = time.Since(cutAt)
		}
	}()
	// The cut-off site stops leading (its metrics are not cut off).
	steppedDown := wait.Until(10*time.Second, func() bool {
		st := shardStates(ps.http[x])
		for s := range partitionShards {
			if st[s].leader {
				return false
			}
		}
		r.stepDown = time.Since(cutAt)
		return true
	})
	wg.Wait()
	if r.probeErr == nil {
		t.Errorf("round %d: the cut-off leader (site %d) acked a Store sent to it after the cut (%s)", round, x, how)
	}
	if r.firstAck == 0 {
		t.Errorf("round %d: the other sites acked no Store during the partition", round)
	}
	if !steppedDown {
		t.Errorf("round %d: the cut-off site %d still leads a shard 10 s after the cut", round, x)
	}
	wait.For(t, 20*time.Second, "20 Stores acked by the other sites during the partition", func() bool { _, n := load.ackCount(x, cutAt); return n >= 20 })
	if d := hold - time.Since(cutAt); d > 0 {
		time.Sleep(d) // models: a partition that lasts hold
	}
	// Every group the cut-off site led has a leader on the other side.
	wait.For(t, 20*time.Second, fmt.Sprintf("a leader on the other side of every group site %d led (%v)", x, led), func() bool {
		for _, g := range led {
			if w.leaderOf(g, x) < 0 {
				return false
			}
		}
		return true
	})
	// Liveness: after 3 s without a message from it the metadata leader
	// records the cut-off site down (a new leader waits 3 s first), unless
	// its messages still arrive (inbound only).
	if hold >= 8*time.Second && how != cutIn {
		wait.For(t, 5*time.Second, fmt.Sprintf("the other sites recording site %d down", x), func() bool {
			for i, a := range ps.http {
				if _, down, ok := siteLiveness(a); i != x && ok && down == 1 {
					return true
				}
			}
			return false
		})
	}
	r.termsAtHeal, r.handedAtHeal = groupTerms(ps, x), handovers(ps.sites)
	healAt := time.Now()
	ps.heal()

	for _, a := range load.ackedBy(x, cutAt, healAt) {
		t.Errorf("round %d: the cut-off site %d acked %s, sent %v after the cut", round, x, a.payload, a.sent.Sub(cutAt).Round(time.Millisecond))
	}
	// A read the old leader served after a new leader acked a write could
	// miss it: a stale read.
	if r.firstAck > 0 && r.lastRead >= r.firstAck {
		t.Errorf("round %d: the cut-off leader served a read %v after the cut, the others acked a Store %v after it", round, r.lastRead, r.firstAck)
	}
	if !ps.converged(partitionShards, 20*time.Second) {
		ps.dumpLogs()
		t.Fatalf("round %d: the sites did not converge after healing", round)
	}
	wait.For(t, 10*time.Second, "every site recording the three sites up after the heal", func() bool {
		for _, a := range ps.http {
			if up, _, ok := siteLiveness(a); !ok || up != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("round %d: site %d cut (%s) for %v: first ack of the others %v after the cut; the cut-off leader served reads until %v (refused from %v), stopped leading after %v; its Store: %v",
		round, x, how, healAt.Sub(cutAt).Round(time.Millisecond), r.firstAck.Round(time.Millisecond), r.lastRead.Round(time.Millisecond),
		r.readsEnded.Round(time.Millisecond), r.stepDown.Round(time.Millisecond), r.probeErr)
	return r
}

// minorityReads reads shard from c (the cut-off leader) until it refuses
// (or 3 s): it returns when the last read it served started and when the
// first refusal came, both since cutAt.
func minorityReads(ctx context.Context, c *client.Client, shard int, cutAt time.Time) (lastRead, refused time.Duration) {
	lastRead = -1
	for time.Since(cutAt) < 3*time.Second {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		_, err := readShard(rctx, c, shard)
		cancel()
		if err != nil {
			return lastRead, time.Since(cutAt)
		}
		lastRead = start.Sub(cutAt)
	}
	return lastRead, time.Since(cutAt)
}

// runPartitions starts the sites and the load, runs a partition per entry
// of hows (each lasting the next of holds), and checks the whole history:
// one leader per term, no election between a heal and the next cut,
// nothing acked lost or stored twice, a Store the cut-off leader got while
// cut off in both directions never stored, and the replicas byte for byte
// alike.
func runPartitions(t *testing.T, hows []cut, holds []time.Duration) []partitionRound {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(hows))*50*time.Second+30*time.Second)
	defer cancel()
	ps := startProxiedSites(t, ctx, partitionShards)
	w := watchTerms(t, ps.http)
	ps.checkLinksProxied()
	load := newPartitionLoad(t, ps, w, partitionShards)
	stop := make(chan struct{})
	done := load.run(ctx, stop, 2, "pub")
	var rounds []partitionRound
	// A healed site rejoins as a follower: with pre-vote it starts no
	// election, so the terms the other two had at the heal stay until the
	// next cut.
	// A shard handed back to its preferred leader (the healed site, once
	// heard from for 5 s: dsd/cluster leaders.go) moves one term by
	// design, and is not counted.
	var healed map[int]uint64
	var handedAtHeal map[int]int
	rejoinElections := 0
	countElections := func() {
		handed := handovers(ps.sites)
		for g, term := range groupTerms(ps, -1) {
			if healed == nil || term == healed[g] {
				continue
			}
			if moved := int(term - healed[g]); moved <= handed[g]-handedAtHeal[g] {
				t.Logf("group %d moved from term %d to %d between a heal and the next cut: handed to its preferred leader", g, healed[g], term)
				continue
			}
			rejoinElections++
			t.Logf("group %d (%d: the metadata group) moved from term %d to %d between a heal and the next cut", g, metaGroup, healed[g], term)
		}
	}
	for i, how := range hows {
		countElections()
		rounds = append(rounds, runPartition(t, ctx, ps, w, load, i+1, how, holds[i%len(holds)]))
		if t.Failed() {
			ps.dumpLogs()
			break
		}
		healed, handedAtHeal = rounds[len(rounds)-1].termsAtHeal, rounds[len(rounds)-1].handedAtHeal
	}
	countElections()
	if rejoinElections > 0 {
		t.Errorf("%d elections between a heal and the next cut: a healed site disrupted the others", rejoinElections)
	}
	close(stop)
	done()
	var unacked, cutBothProbes []string
	for _, r := range rounds {
		unacked = append(unacked, r.probe)
		if r.how == cutBoth {
			cutBothProbes = append(cutBothProbes, r.probe)
		}
	}
	read, lost, dup, unexpected, found := load.check(ctx, unacked...)
	leaderships := w.check(t)
	t.Logf("%d partitions, %d Stores acked (%d attempts retried); read %d, lost %d, stored more than once %d, unexpected %d; "+
		"refused Stores of the cut-off leaders stored: %v; %d (group, term) leaderships seen (shards and the metadata group), one leader each; whole test %v",
		len(rounds), load.ackedTotal(), load.retries, read, lost, dup, unexpected, found, leaderships, time.Since(began).Round(time.Millisecond))
	if lost != 0 || dup != 0 || unexpected != 0 {
		t.Errorf("lost %d, duplicated %d, unexpected %d (read %d, %d acked)", lost, dup, unexpected, read, load.ackedTotal())
	}
	// Sent only to a leader cut off both ways, these entries were never
	// in any other site's log: the new leader's log replaced them.
	for _, p := range found {
		if slices.Contains(cutBothProbes, p) {
			t.Errorf("a Store that a leader cut off in both directions refused is stored: %s", p)
		}
	}
	// A Store refused by a leader that could still send may be committed
	// by the next leader, which has its entry (found, logged).
	// The replicas converged: every site applied the same entries, and
	// wrote the same bytes.
	if !ps.converged(partitionShards, 20*time.Second) {
		ps.dumpLogs()
		t.Fatal("the sites did not converge at the end")
	}
	differ, keys := ps.stopAndCompare(partitionShards)
	for _, d := range differ {
		t.Error(d)
	}
	t.Logf("the three replicas of %d shards: %d replicated keys each, byte for byte alike: %v", partitionShards, keys, len(differ) == 0)
	return rounds
}

// percentiles are the p50 and p99 (nearest rank) of ds.
func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return rank(0.50), rank(0.99)
}

func logPartitionStats(t *testing.T, rounds []partitionRound) {
	var acks, reads []time.Duration
	for _, r := range rounds {
		acks = append(acks, r.firstAck)
		reads = append(reads, r.readsEnded)
	}
	if len(acks) == 0 {
		return
	}
	a50, a99 := percentiles(acks)
	r50, r99 := percentiles(reads)
	t.Logf("over %d partitions: cut → first ack of the others p50 %v p99 %v; cut → the cut-off leader's first refused read p50 %v p99 %v",
		len(rounds), a50.Round(time.Millisecond), a99.Round(time.Millisecond), r50.Round(time.Millisecond), r99.Round(time.Millisecond))
}

// partitionHolds are how long the partitions last: 3 s in make test; under
// make torture also 8 s and 20 s, longer than the links' gRPC keepalive
// (15 s): the sites then drop their links and dial new ones, which the
// partition holds too, and heal on new connections.
func partitionHolds() []time.Duration {
	if testutil.Torture() {
		return []time.Duration{3 * time.Second, 8 * time.Second, 20 * time.Second}
	}
	return []time.Duration{3 * time.Second}
}

// TestPartitionLeader: the leader of most shards is cut off in both
// directions (2 rounds, each cutting the leader of the moment; 9 under
// `make torture`) under Store load.
func TestPartitionLeader(t *testing.T) {
	n := 2
	if testutil.Torture() {
		n = 9
	}
	logPartitionStats(t, runPartitions(t, slices.Repeat([]cut{cutBoth}, n), partitionHolds()))
}

// TestPartitionOneWay: the leader of most shards can send but not
// receive, then (the leader of that moment) receive but not send (once
// each; 3 times each under `make torture`).
func TestPartitionOneWay(t *testing.T) {
	n := 1
	if testutil.Torture() {
		n = 3
	}
	logPartitionStats(t, runPartitions(t, slices.Repeat([]cut{cutIn, cutOut}, n), partitionHolds()))
}

// TestPartitionSessionTakeover: a durable session opened through the
// leader of its shard; the leader is cut off in both directions; a gateway
// on the majority side takes the session over (a new gateway epoch) and
// commits a subscription; a gateway on the minority side tries to open it
// and to commit with the old guard through the cut-off leader: both fail.
// After healing the session is the majority's on every site: its guard,
// owner and subscriptions; the old guard is refused.
func TestPartitionSessionTakeover(t *testing.T) {
	const nShards, shard = 1, 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ps := startProxiedSites(t, ctx, nShards)
	w := watchTerms(t, ps.http)
	ps.checkLinksProxied()
	load := newPartitionLoad(t, ps, w, nShards)
	sessions := func(i int) dsdv1.SessionServiceClient { return load.clients[i].Sessions() }
	var x int
	wait.For(t, 20*time.Second, "a leader of the shard", func() bool { x = w.leaderOf(shard); return x >= 0 })
	cid := clientsOfShard(shard, nShards, 1)[0]
	sub := func(id uint64, filter string) *storagev1.SessionCommit {
		return &storagev1.SessionCommit{ClientId: cid,
			PutStates:        []*storagev1.SubscriptionState{{Id: id + 1, SubscriptionId: id, TopicFilter: filter, Qos: 1}},
			PutSubscriptions: []*storagev1.Subscription{{Id: id, TopicFilter: filter, CurrentState: id + 1}}}
	}
	open := func(i int, gw string, epoch uint64, timeout time.Duration) (*dsdv1.OpenSessionResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return sessions(i).OpenSession(cctx, &dsdv1.OpenSessionRequest{ClientId: cid, ProtocolVersion: 5, ExpiryIntervalS: 3600, GatewayId: gw, GatewayEpoch: epoch})
	}
	commit := func(i int, c *storagev1.SessionCommit, timeout time.Duration) error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := sessions(i).CommitSession(cctx, &dsdv1.CommitSessionRequest{Commit: c})
		return err
	}
	first, err := open(x, "gw-a", 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := sub(1, "before/#")
	c.Guard = first.GetGuard()
	if err := commit(x, c, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	cutAt := time.Now()
	ps.isolate(x, cutBoth)
	// The minority side, at once (the cut-off site still believes it
	// leads): a takeover by another gateway, a commit with the old guard.
	var wg sync.WaitGroup
	var minorityOpen *dsdv1.OpenSessionResponse
	var minorityOpenErr, minorityCommitErr error
	var minorityOpenTook, minorityCommitTook time.Duration
	wg.Add(2)
	go func() {
		defer wg.Done()
		minorityOpen, minorityOpenErr = open(x, "gw-minority", 7, 4*time.Second)
		minorityOpenTook = time.Since(cutAt)
	}()
	go func() {
		defer wg.Done()
		c := sub(3, "minority/#")
		c.Guard = first.GetGuard()
		minorityCommitErr = commit(x, c, 4*time.Second)
		minorityCommitTook = time.Since(cutAt)
	}()
	// The majority side: the new leader takes the session over.
	var y int
	var second *dsdv1.OpenSessionResponse
	wait.For(t, 15*time.Second, "a takeover on the majority side", func() bool {
		if y = w.leaderOf(shard, x); y < 0 {
			return false
		}
		second, err = open(y, "gw-b", 2, time.Second)
		return err == nil
	})
	tookOver := time.Since(cutAt)
	c = sub(2, "after/#")
	c.Guard = second.GetGuard()
	if err := commit(y, c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// The cut-off site refuses a GetSession now (it no longer holds the
	// read lease) instead of answering with the old guard and owner.
	stale, staleErr := sessions(x).GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: cid})
	ps.heal()
	t.Logf("cut-off leader site %d: open by another gateway: %v %v (answered %v after the cut); commit with the old guard: %v (answered %v after the cut); the majority (site %d) took the session over %v after the cut (guard %d → %d); GetSession on the cut-off site during the partition: guard %d owner %q (%v)",
		x, minorityOpen, minorityOpenErr, minorityOpenTook.Round(time.Millisecond), minorityCommitErr, minorityCommitTook.Round(time.Millisecond), y, tookOver.Round(time.Millisecond), first.GetGuard(), second.GetGuard(),
		stale.GetSession().GetRecord().GetGuard(), stale.GetSession().GetRecord().GetOwnerGatewayId(), staleErr)
	if minorityOpenErr == nil {
		t.Errorf("the cut-off leader opened the session for another gateway during the partition: %v", minorityOpen)
	}
	if staleErr == nil {
		t.Errorf("the cut-off site answered GetSession during the partition (guard %d, owner %q)",
			stale.GetSession().GetRecord().GetGuard(), stale.GetSession().GetRecord().GetOwnerGatewayId())
	}
	if minorityCommitErr == nil {
		t.Error("the cut-off leader committed with the old guard during the partition")
	}
	if !second.GetSessionPresent() || !second.GetTakenOver() || second.GetGuard() <= first.GetGuard() {
		t.Fatalf("the majority's open: %v, want the session present, taken over, a guard above %d", second, first.GetGuard())
	}

	if !ps.converged(nShards, 20*time.Second) {
		ps.dumpLogs()
		t.Fatal("the sites did not converge after healing")
	}
	// After healing: the session is the majority's at the shard's leader
	// (only the leader answers: a follower's view may be behind; the
	// sites' keyspaces were compared above), and the old guard is refused
	// by the leader. A new leader answers once a quorum confirmed it.
	var (
		got    *dsdv1.GetSessionResponse
		getErr error
		leader int
	)
	wait.Until(10*time.Second, func() bool {
		if leader = w.leaderOf(shard); leader < 0 {
			return false
		}
		got, getErr = sessions(leader).GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: cid})
		return getErr == nil
	})
	rec := got.GetSession().GetRecord()
	var filters []string
	for _, s := range got.GetSession().GetSubscriptions() {
		filters = append(filters, s.GetTopicFilter())
	}
	slices.Sort(filters)
	if getErr != nil || rec.GetGuard() != second.GetGuard() || rec.GetOwnerGatewayId() != "gw-b" || rec.GetOwnerEpoch() != 2 ||
		!slices.Equal(filters, []string{"after/#", "before/#"}) {
		t.Errorf("leader site %d after healing: guard %d owner %q epoch %d subscriptions %v (%v); want guard %d, gw-b epoch 2, [after/# before/#]",
			leader, rec.GetGuard(), rec.GetOwnerGatewayId(), rec.GetOwnerEpoch(), filters, getErr, second.GetGuard())
	}
	c = sub(4, "late/#")
	c.Guard = first.GetGuard()
	if err := commit(leader, c, 5*time.Second); err == nil {
		t.Error("the leader accepted a commit with the old guard after healing")
	}
	if n := w.check(t); n == 0 {
		t.Error("the term watch saw no leadership")
	}
}
