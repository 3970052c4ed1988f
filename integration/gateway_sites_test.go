package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestGatewayFollowsShardLeaders: three dsd processes with replication
// factor 3 and one gateway given all three (--dsd A,B,C). MQTT clients
// publish at QoS 1 and QoS 2 to durable subscribers (one subscribed at
// QoS 1, one at QoS 2) through the gateway, whose Stores, session calls
// and reads go to each shard's leader. The site that leads the most
// shards is killed with SIGKILL under that load: the gateway follows the
// new leaders without closing any client connection; every acked message
// reaches both subscribers (lost = 0), QoS 2 exactly once. The test logs
// the write pause: the p99 and the longest publish latency around the
// kill.
func TestGatewayFollowsShardLeaders(t *testing.T) {
	const nShards = 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sites := startReplicatedSites(t, ctx, nShards)
	leaders := func() []int { return shardLeaders(sites, nShards) }
	waitLed(t, sites, nShards, -1, 30*time.Second)
	// Only the first site is needed: the gateway learns the others.
	gw, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: grpcAddrList(sites)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(gw.Log(), 80))
			if dir := os.Getenv("STRATA_TEST_LOG_DIR"); dir != "" {
				_ = os.WriteFile(filepath.Join(dir, "gateway.log"), []byte(gw.Log()), 0o644)
			}
		}
		_ = gw.Stop(10 * time.Second)
	})
	addr := func() string { return gw.Addrs["tcp.default"] }

	run := newLoadRun()
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	run.subscriberAt(subCtx, "sites-sub-q1", addr, "sites/+", 1)
	run.subscriberAt(subCtx, "sites-sub-q2", addr, "sites/+", 2)
	for p := range 8 {
		qos := byte(1 + p%2)
		run.publisher(pubCtx, fmt.Sprintf("sites-pub-%d", p), addr, qos, "sites/%d", 4)
	}
	// Elections while the load runs and no site fails would be heartbeats
	// that did not fit in the election timeout.
	loadAt, terms, handed := time.Now(), groupTermsOf(sites), handovers(sites)
	wait.For(t, 30*time.Second, "200 publishes acked", func() bool { return run.acked.Load() >= 200 })
	t.Logf("elections under load before the kill: %d in %v", elections(sites, terms, handed), time.Since(loadAt).Round(time.Millisecond))

	// Kill the site that leads the most shards.
	lead := leaders()
	victim, count := mostLeading(lead, len(sites))
	ackedAtKill := run.acked.Load()
	killedAt := time.Now()
	sites[victim].Kill()
	t.Logf("SIGKILL of site %d, leader of %d of %d shards (leaders %v), %d publishes acked", victim, count, nShards, lead, ackedAtKill)
	waitLed(t, sites, nShards, victim, 20*time.Second)
	t.Logf("every shard led again %v after the kill: %v", time.Since(killedAt).Round(time.Millisecond), leaders())
	wait.For(t, 30*time.Second, "300 more publishes acked after the kill", func() bool { return run.acked.Load() >= ackedAtKill+300 })

	stoppedAt := time.Now().UnixMicro()
	stopPubs()
	run.pubs.Wait()
	rep := run.settle(t, 30*time.Second)
	stopSubs()
	run.subs.Wait()
	t.Logf("history: %s", rep)
	if len(rep.QoS2Duplicates) > 0 {
		t.Fatalf("QoS 2 delivered more than once: %v", rep.QoS2Duplicates[:min(5, len(rep.QoS2Duplicates))])
	}
	// A publish without an answer before the publishers were stopped
	// means its connection closed (those in flight at the stop are
	// cancelled by the test).
	unanswered := 0
	for _, e := range run.h.Events() {
		if e.Kind == checker.Unknown && e.TimeUs < stoppedAt {
			unanswered++
		}
	}
	if unanswered > 0 || run.disconnects.Load() > 0 {
		t.Fatalf("the gateway closed client connections: %d publishes without an answer, %d subscriber connections closed",
			unanswered, run.disconnects.Load())
	}
	p99, longest, n := writePause(run.h.Events(), killedAt.UnixMicro())
	t.Logf("write pause around the SIGKILL: p99 %v, longest %v over %d publishes invoked from 1 s before the kill to 10 s after; the longest per publisher: %v",
		p99, longest, n, publisherPauses(run.h.Events(), killedAt.UnixMicro()))
}

// publisherPauses is, per publisher, the longest latency of its
// publishes invoked from 1 s before killedUs to 10 s after it: the
// publishers of the killed site's shards wait for their new leaders.
func publisherPauses(events []checker.Event, killedUs int64) []string {
	type key struct {
		pub string
		seq uint64
	}
	invoked := map[key]int64{}
	longest := map[string]time.Duration{}
	for _, e := range events {
		k := key{e.Publisher, e.Seq}
		switch e.Kind {
		case checker.Invoke:
			if e.TimeUs >= killedUs-1e6 && e.TimeUs <= killedUs+10e6 {
				invoked[k] = e.TimeUs
			}
		case checker.Ack:
			if at, ok := invoked[k]; ok {
				longest[e.Publisher] = max(longest[e.Publisher], time.Duration(e.TimeUs-at)*time.Microsecond)
			}
		}
	}
	var out []string
	for p, d := range longest {
		out = append(out, fmt.Sprintf("%s:%v", strings.TrimPrefix(p, "sites-pub-"), d.Round(time.Millisecond)))
	}
	slices.Sort(out)
	return out
}

// writePause reads the publish latencies (invoke to ack) of the publishes
// invoked from 1 s before killedUs to 10 s after it: their p99 and their
// maximum, and how many there were.
func writePause(events []checker.Event, killedUs int64) (p99, longest time.Duration, n int) {
	type key struct {
		pub string
		seq uint64
	}
	invoked := map[key]int64{}
	var lat []time.Duration
	for _, e := range events {
		k := key{e.Publisher, e.Seq}
		switch e.Kind {
		case checker.Invoke:
			if e.TimeUs >= killedUs-1e6 && e.TimeUs <= killedUs+10e6 {
				invoked[k] = e.TimeUs
			}
		case checker.Ack:
			if at, ok := invoked[k]; ok {
				lat = append(lat, time.Duration(e.TimeUs-at)*time.Microsecond)
			}
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100], lat[len(lat)-1], len(lat)
}

// TestGatewayLeaseAcrossSites: the shards of three dsd processes (RF 3)
// are led by more than one site (their preferred leaders); a gateway given one of them holds sessions with
// wills in every shard; when the gateway is killed with SIGKILL, every
// session's will fires, in every shard wherever it is led: the gateway
// kept its lease with every site, and each ends the dead epoch's sessions
// in the shards it leads.
func TestGatewayLeaseAcrossSites(t *testing.T) {
	const nShards, perShard = 4, 2
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The shards' preferred leaders are spread over the three sites.
	sites, lead := startSpreadSites(t, ctx, nShards)
	addrs := httpAddrs(sites)
	t.Logf("shard leaders %v", lead)
	first := lead[0]

	gw, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: sites[(first+1)%3].GRPCAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Kill() })
	var ids []string
	count := make([]int, nShards)
	for i := 0; len(ids) < nShards*perShard; i++ {
		id := fmt.Sprintf("will-%d", i)
		if sh := storage.ShardOf(id, nShards); count[sh] < perShard {
			count[sh]++
			ids = append(ids, id)
		}
	}
	zero := uint32(0)
	expiry := uint32(3600)
	for _, id := range ids {
		nc, err := net.Dial("tcp", gw.Addrs["tcp.default"])
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
			Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
			WillMessage:    &paho.WillMessage{Topic: "will/" + id, Payload: []byte("gone"), QoS: 1},
			WillProperties: &paho.WillProperties{WillDelayInterval: &zero}})
		if err != nil || ack.ReasonCode != 0 {
			t.Fatalf("connect %s: %v %v", id, ack, err)
		}
	}
	killedAt := time.Now()
	gw.Kill()
	sessions := make([]dsdv1.SessionServiceClient, len(sites))
	for i, d := range sites {
		c, err := client.Dial(d.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sessions[i] = c.Sessions()
	}
	fired := func(id string) bool {
		l := shardLeader(addrs, storage.ShardOf(id, nShards))
		if l < 0 {
			return false
		}
		g, err := sessions[l].GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: id})
		return err == nil && g.GetSession().GetRecord().GetWillFiredAtUs() != 0
	}
	if !wait.Until(30*time.Second, func() bool {
		for _, id := range ids {
			if !fired(id) {
				return false
			}
		}
		return true
	}) {
		var missing []string
		for _, id := range ids {
			if !fired(id) {
				missing = append(missing, fmt.Sprintf("%s (shard %d)", id, storage.ShardOf(id, nShards)))
			}
		}
		t.Fatalf("wills not fired %v after the gateway's SIGKILL: %v (leaders %v)", time.Since(killedAt).Round(time.Millisecond), missing, shardLeaders(sites, nShards))
	}
	t.Logf("every will of %d sessions over %d shards fired %v after the gateway's SIGKILL (leaders %v)",
		len(ids), nShards, time.Since(killedAt).Round(time.Millisecond), shardLeaders(sites, nShards))
}
