package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestSharedGroupAcrossSites: three dsd processes (RF 3) whose shards are
// led by different sites; the shared group's shard (its filter's), its
// members' session shards and the streams' shards (the publishers') are
// chosen by storage.ShardOf so that the group is led by one site and the
// members' sessions by another, and the messages are in shards of both.
// Three durable members (QoS 2 subscriptions) on two gateways, each given
// every site, share the load of QoS 1 and QoS 2 publishers. While they
// publish, one member's connection is cut without a DISCONNECT (its QoS 1
// grants go to the others; its recorded QoS 2 grants wait for it) and it
// comes back later, and another member ends its session (its recorded QoS
// 2 grants are dropped, and counted). Then: every acked message reached a
// member (QoS 2: only those the dropped counters account for may be
// missing), no QoS 2 message reached two members, a QoS 1 repeat carries
// DUP; and once the last members end their sessions the group is
// forgotten on every site.
func TestSharedGroupAcrossSites(t *testing.T) {
	const nShards = 4
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sites, lead := startSpreadSites(t, ctx, nShards)
	leaders := func() []int { return shardLeaders(sites, nShards) }
	// The group's shard is led by site X; the members' sessions live in
	// shards led by other sites; the publishers store in a shard X leads
	// and in one another site leads.
	groupShard := 0
	x := lead[groupShard]
	var other []int // shards not led by X
	for sh, l := range lead {
		if l != x {
			other = append(other, sh)
		}
	}
	var filter, prefix string
	for k := 0; ; k++ {
		prefix = fmt.Sprintf("xs%d", k)
		filter = "$share/sg/" + prefix + "/#"
		if storage.ShardOf(filter, nShards) == groupShard {
			break
		}
	}
	memberIDs := idsInShards("member", nShards, other, 3)
	pubShards := []int{groupShard, other[0]}
	pubIDs := idsInShards("spub", nShards, pubShards, 4)
	t.Logf("shard leaders %v: group %s in shard %d (site %d); members %v in shards %v; publishers %v in shards %v",
		lead, filter, groupShard, x, memberIDs, shardsOf(memberIDs, nShards), pubIDs, shardsOf(pubIDs, nShards))

	var gws []*Gateway
	for range 2 {
		gw, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: grpcAddrList(sites)})
		if err != nil {
			t.Fatal(err)
		}
		gws = append(gws, gw)
	}
	t.Cleanup(func() {
		for i, gw := range gws {
			if t.Failed() {
				t.Logf("gateway %d log:\n%s", i, tail(gw.Log(), 60))
			}
			_ = gw.Stop(10 * time.Second)
		}
		if t.Failed() {
			for i, d := range sites {
				t.Logf("site %d log:\n%s", i, tail(d.Log(), 60))
			}
			if dir := os.Getenv("STRATA_TEST_LOG_DIR"); dir != "" {
				for i, d := range sites {
					_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("site%d.log", i)), []byte(d.Log()), 0o644)
				}
				for i, gw := range gws {
					_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("gateway%d.log", i)), []byte(gw.Log()), 0o644)
				}
			}
		}
	})
	gwAddr := func(i int) func() string { return func() string { return gws[i].Addrs["tcp.default"] } }

	run := newLoadRun()
	members := make([]*siteMember, len(memberIDs))
	for i, id := range memberIDs {
		members[i] = newSiteMember(t, ctx, run, id, gwAddr(i%2), filter)
	}
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	for i, id := range pubIDs {
		run.publisher(pubCtx, id, gwAddr(i%2), byte(1+i%2), prefix+"/t%d", 4)
	}
	waitAcked := func(n int64, what string) {
		t.Helper()
		before := run.acked.Load()
		if !wait.Until(45*time.Second, func() bool { return run.acked.Load() >= before+n }) {
			t.Fatalf("%s: %d publishes acked, want %d more (leaders %v)", what, run.acked.Load(), n, leaders())
		}
	}
	waitAcked(150, "before the cut")
	// Member 1's connection ends without a DISCONNECT; it comes back later.
	t.Logf("cut member 1 at %d acked", run.acked.Load())
	members[1].cut()
	waitAcked(150, "after the cut")
	t.Logf("reconnect member 1 at %d acked", run.acked.Load())
	members[1].connect(t, ctx, false)
	waitAcked(100, "after the reconnect")
	// Member 2 ends its session.
	t.Logf("member 2 ends at %d acked", run.acked.Load())
	members[2].end()
	waitAcked(150, "after member 2's end")
	stopPubs()
	run.pubs.Wait()

	dropped := func() int {
		n := 0
		for _, d := range sites {
			n += int(metricSum(d.HTTPAddr, "strata_ds_shared_dropped_messages_total"))
		}
		return n
	}
	var v sharedVerdict
	wait.Every(30*time.Second, 100*time.Millisecond, func() bool {
		v = checkShared(run.h.Events())
		return len(v.lost1) == 0 && len(v.lost2) <= dropped()
	})
	t.Logf("%d publishes acked; delivered per member %v; %d QoS 1 messages repeated (with DUP); QoS 2 lost %d, dropped (counted) %d",
		run.acked.Load(), v.perMember, v.repeats, len(v.lost2), dropped())
	if len(v.lost1) > 0 || len(v.lost2) > dropped() || len(v.problems) > 0 {
		for i, d := range sites {
			if c, err := client.Dial(d.GRPCAddr); err == nil {
				resp, err := c.Admin.ListSharedGroups(ctx, &dsdv1.ListSharedGroupsRequest{Filter: filter})
				t.Logf("site %d: groups %v %v", i, resp, err)
				_ = c.Close()
			}
		}
		t.Fatalf("QoS 1 lost %d (e.g. %v); QoS 2 lost %d (e.g. %v) with %d dropped; %d problems: %v",
			len(v.lost1), v.lost1[:min(5, len(v.lost1))], len(v.lost2), v.lost2[:min(5, len(v.lost2))], dropped(),
			len(v.problems), v.problems[:min(5, len(v.problems))])
	}
	for _, id := range []string{memberIDs[0], memberIDs[1]} {
		if v.perMember[id] == 0 {
			t.Errorf("member %s got nothing", id)
		}
	}

	// The last members end their sessions: the group is forgotten, on
	// every site (its shard's state is replicated).
	members[0].end()
	members[1].end()
	admins := make([]dsdv1.AdminServiceClient, len(sites))
	for i, d := range sites {
		c, err := client.Dial(d.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		admins[i] = c.Admin
	}
	groupsLeft := func() []int {
		var out []int
		for i, a := range admins {
			resp, err := a.ListSharedGroups(ctx, &dsdv1.ListSharedGroupsRequest{Filter: filter})
			if err != nil || len(resp.GetGroups()) > 0 {
				out = append(out, i)
			}
		}
		return out
	}
	if !wait.Until(15*time.Second, func() bool { return len(groupsLeft()) == 0 }) {
		t.Fatalf("the group %s is not forgotten on sites %v after its last member ended its session (leaders %v)", filter, groupsLeft(), leaders())
	}
}

// idsInShards returns n client ids "prefix-k" spread over shards in turn.
func idsInShards(prefix string, nShards int, shards []int, n int) []string {
	var out []string
	for k := 0; len(out) < n; k++ {
		id := fmt.Sprintf("%s-%d", prefix, k)
		if storage.ShardOf(id, nShards) == shards[len(out)%len(shards)] {
			out = append(out, id)
		}
	}
	return out
}

func shardsOf(ids []string, nShards int) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = storage.ShardOf(id, nShards)
	}
	return out
}

// metricSum sums every sample of a metric (0 when the site does not answer).
func metricSum(httpAddr, name string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`(?:\{[^}]*\})? (\S+)$`).FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		sum += v
	}
	return sum
}

// siteMember is a durable member (Session Expiry 300 s, QoS 2
// subscription) of a shared group, recording what it receives in the
// run's history, whose connection the test can cut.
type siteMember struct {
	run    *loadRun
	id     string
	addr   func() string
	filter string
	mu     sync.Mutex
	nc     net.Conn
	c      *paho.Client
}

func newSiteMember(t *testing.T, ctx context.Context, run *loadRun, id string, addr func() string, filter string) *siteMember {
	m := &siteMember{run: run, id: id, addr: addr, filter: filter}
	m.connect(t, ctx, true)
	run.h.Add(checker.Event{Kind: checker.Subscribe, Reader: id, Topic: filter, QoS: 2, TimeUs: run.now()})
	sa, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 2}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 2 {
		t.Fatalf("SUBSCRIBE %s: %+v, %v", filter, sa, err)
	}
	return m
}

func (m *siteMember) connect(t *testing.T, ctx context.Context, clean bool) {
	t.Helper()
	nc, err := net.Dial("tcp", m.addr())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			if pub, seq, ok := parsePayload(string(pr.Packet.Payload)); ok {
				m.run.h.Add(checker.Event{Kind: checker.Deliver, Reader: m.id, Publisher: pub, Seq: seq, Topic: pr.Packet.Topic,
					QoS: int(pr.Packet.QoS), Dup: pr.Packet.Duplicate(), TimeUs: m.run.now()})
			}
			// models: a member that works 2 ms on each message, so some stay in flight.
			time.Sleep(2 * time.Millisecond)
			return true, nil
		}}})
	expiry := uint32(300)
	recvMax := uint16(8)
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: m.id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &recvMax}})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %v", m.id, ack, err)
	}
	if !clean && !ack.SessionPresent {
		t.Fatalf("%s reconnected without its session", m.id)
	}
	m.mu.Lock()
	m.nc, m.c = nc, c
	m.mu.Unlock()
}

// cut closes the member's TCP connection without a DISCONNECT.
func (m *siteMember) cut() {
	m.mu.Lock()
	defer m.mu.Unlock()
	_ = m.nc.Close()
	<-m.c.Done()
}

// end ends the member's session: DISCONNECT with Session Expiry 0.
func (m *siteMember) end() {
	m.mu.Lock()
	defer m.mu.Unlock()
	zero := uint32(0)
	_ = m.c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &zero}})
	<-m.c.Done()
}

// sharedVerdict is what checkShared found in a shared group's history.
type sharedVerdict struct {
	lost1, lost2 []string // acked, delivered to no member, by QoS
	problems     []string
	perMember    map[string]int
	repeats      int
}

// checkShared checks a shared group's history: every acked message reached
// a member; a QoS 2 one reached one member only; a repeat carries DUP.
func checkShared(events []checker.Event) sharedVerdict {
	type key struct {
		pub string
		seq uint64
	}
	acked := map[key]int{}
	readers := map[key]map[string]int{}
	undup := map[key]int{}
	v := sharedVerdict{perMember: map[string]int{}}
	for _, e := range events {
		k := key{e.Publisher, e.Seq}
		switch e.Kind {
		case checker.Ack:
			acked[k] = e.QoS
		case checker.Deliver:
			if readers[k] == nil {
				readers[k] = map[string]int{}
			}
			readers[k][e.Reader]++
			v.perMember[e.Reader]++
			if !e.Dup {
				undup[k]++
			}
		}
	}
	for k, qos := range acked {
		name := fmt.Sprintf("%s/%d", k.pub, k.seq)
		n := 0
		for _, c := range readers[k] {
			n += c
		}
		switch {
		case len(readers[k]) == 0 && qos == 2:
			v.lost2 = append(v.lost2, name)
		case len(readers[k]) == 0:
			v.lost1 = append(v.lost1, name)
		case qos == 2 && len(readers[k]) > 1:
			v.problems = append(v.problems, fmt.Sprintf("QoS 2 %s reached %d members: %v", name, len(readers[k]), readers[k]))
		case undup[k] > 1:
			v.problems = append(v.problems, fmt.Sprintf("%s delivered %d times without DUP: %v", name, undup[k], readers[k]))
		}
		if n > 1 {
			v.repeats++
		}
	}
	return v
}
