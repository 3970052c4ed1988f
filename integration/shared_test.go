package integration

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestSharedGroupAcrossGateways: four members of one shared group on two
// gateways share a QoS 1 and a QoS 2 load: every message reaches exactly
// one member (QoS 2) or at least one, repeats only with DUP (QoS 1), and
// each member gets a part (round robin).
func TestSharedGroupAcrossGateways(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			filter := fmt.Sprintf("$share/g%d/shared%d/#", qos, qos)
			var members []*pahoSub
			for i := range 4 {
				m := dialSub(t, ctx, c.addr(i%2), pahoOpts{clientID: fmt.Sprintf("m%d-%d", qos, i), cleanStart: true, expiry: 300})
				defer m.disconnect()
				m.subscribe(t, ctx, filter, qos)
				members = append(members, m)
			}
			const pubs, count, topics = 2, 200, 8
			publishAll(t, ctx, []string{c.addr(0), c.addr(1)}, pubs, count, topics, fmt.Sprintf("shared%d/t%%d", qos), qos)
			total := func() int {
				n := 0
				for _, m := range members {
					n += m.count()
				}
				return n
			}
			wait.For(t, 30*time.Second, "every message delivered", func() bool { return total() >= pubs*count })
			var all []delivery
			for i, m := range members {
				got := m.messages()
				if len(got) == 0 {
					t.Errorf("member %d got nothing (round robin gives each a part)", i)
				}
				t.Logf("member %d: %d messages", i, len(got))
				all = append(all, got...)
			}
			checkEachOnce(t, all, pubs, count, qos == 1)
		})
	}
}

// checkEachOnce checks that every "publisher/k/seq" payload of publishers
// × count arrived in all (the members' deliveries, in any order), exactly
// once unless allowDup: then every copy but one must carry DUP.
func checkEachOnce(t *testing.T, all []delivery, publishers, count int, allowDup bool) {
	t.Helper()
	seen, undup := map[string]int{}, map[string]int{}
	for _, d := range all {
		seen[d.payload]++
		if !d.dup {
			undup[d.payload]++
		}
		if !allowDup && seen[d.payload] > 1 || undup[d.payload] > 1 {
			t.Fatalf("%s delivered %d times, %d without DUP", d.payload, seen[d.payload], undup[d.payload])
		}
	}
	lost := 0
	for p := range publishers {
		for i := range count {
			if seen[fmt.Sprintf("pub-%d/%d/%d", p, i%8, i)] == 0 {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d messages lost", lost, publishers*count)
	}
}

// TestSharedGroupGatewayKilled: a member's gateway is SIGKILLed while the
// group has messages in flight. QoS 1: the grants the killed gateway's
// members held go to the members on the other gateway (its link broke), so
// nothing is lost without any reconnect, and a repeat carries DUP. QoS 2:
// a grant stays with its member (MQTT 5 section 4.8.2), which reconnects
// to the other gateway and completes it; no message reaches two members.
func TestSharedGroupGatewayKilled(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c := startCluster(t, ctx, 2)
			filter := "$share/g/k/#"
			ids := []string{"a0", "b0", "a1", "b1"} // a*: gateway 0, b*: gateway 1 (killed)
			members := map[string][]*pahoSub{}
			for i, id := range ids {
				o := pahoOpts{clientID: id, cleanStart: true, expiry: 300, recvMax: 4}
				if i%2 == 1 {
					o.slow = 20 * time.Millisecond // holds its grants when its gateway dies
				}
				m := dialSub(t, ctx, c.addr(i%2), o)
				m.subscribe(t, ctx, filter, qos)
				members[id] = append(members[id], m)
			}
			const count = 400
			// The gateway dies mid-stream: publishing goes on (through the
			// other gateway) while the group has messages in flight.
			published := make(chan struct{})
			go func() {
				defer close(published)
				publishAll(t, ctx, []string{c.addr(0)}, 1, count, 8, "k/t%d", qos)
			}()
			wait.For(t, 30*time.Second, "a quarter delivered", func() bool {
				n := 0
				for _, conns := range members {
					n += conns[0].count()
				}
				return n >= count/4
			})
			c.gateways[1].Kill()
			<-published
			killed := time.Now()
			if qos == 2 {
				for _, id := range []string{"b0", "b1"} {
					members[id] = append(members[id], dialSub(t, ctx, c.addr(0), pahoOpts{clientID: id, expiry: 300}))
				}
			}
			received := func() (map[string]map[string]int, []delivery) {
				by := map[string]map[string]int{} // payload -> member -> copies
				var all []delivery
				for id, conns := range members {
					for _, m := range conns {
						for _, d := range m.messages() {
							if by[d.payload] == nil {
								by[d.payload] = map[string]int{}
							}
							by[d.payload][id]++
							all = append(all, d)
						}
					}
				}
				return by, all
			}
			// The bound: within 2 gateway heartbeat intervals (2 s
			// each by default) of the end of publishing, itself after the kill.
			wait.For(t, 4*time.Second, "every message delivered after the kill", func() bool {
				by, _ := received()
				return len(by) >= count
			})
			t.Logf("QoS %d: every message delivered %v after the last was published (the gateway was killed before)", qos, time.Since(killed).Round(time.Millisecond))
			by, all := received()
			checkEachOnce(t, all, 1, count, true)
			handed := 0
			for _, ms := range by {
				if (ms["b0"] > 0 || ms["b1"] > 0) && (ms["a0"] > 0 || ms["a1"] > 0) {
					handed++
				}
			}
			t.Logf("QoS %d: %d messages went to a killed gateway's member and then to another", qos, handed)
			for p, ms := range by {
				if qos == 2 && len(ms) > 1 {
					t.Fatalf("QoS 2 message %s reached %d members: %v", p, len(ms), ms)
				}
			}
			for _, conns := range members {
				for _, m := range conns {
					select {
					case <-m.c.Done():
					default:
						m.disconnect()
					}
				}
			}
		})
	}
}

// TestSharedSubscriptionRules: the MQTT 5 shared-subscription cases of the
// paho interoperability suite, on Strata: two groups and an ordinary
// subscription on one topic (the ordinary one gets every message, each
// group every message once), no retained message on a shared subscription,
// and No Local on a shared subscription is a Protocol Error.
func TestSharedSubscriptionRules(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 1)
	addr := c.addr(0)

	// A retained message before anyone subscribes.
	publishOne(t, ctx, addr, "rules/r", "retained", true)

	plain := dialSub(t, ctx, addr, pahoOpts{clientID: "plain", cleanStart: true})
	defer plain.disconnect()
	plain.subscribe(t, ctx, "rules/#", 1)
	groups := map[string][]*pahoSub{}
	for _, g := range []string{"g1", "g2"} {
		for i := range 2 {
			m := dialSub(t, ctx, addr, pahoOpts{clientID: fmt.Sprintf("%s-%d", g, i), cleanStart: true})
			defer m.disconnect()
			m.subscribe(t, ctx, "$share/"+g+"/rules/#", 1)
			groups[g] = append(groups[g], m)
		}
	}
	plain.waitCount(t, 1, 10*time.Second) // the retained message: to the ordinary subscription only
	const n = 20
	for i := range n {
		publishOne(t, ctx, addr, "rules/t", fmt.Sprint(i), false)
	}
	plain.waitCount(t, n+1, 10*time.Second)
	for g, ms := range groups {
		wait.For(t, 10*time.Second, g+" gets every message", func() bool { return ms[0].count()+ms[1].count() >= n })
		seen := map[string]int{}
		for i, m := range ms {
			if m.count() == 0 {
				t.Errorf("%s member %d got nothing", g, i)
			}
			for _, d := range m.messages() {
				if d.payload == "retained" {
					t.Fatalf("%s member %d got the retained message", g, i)
				}
				seen[d.payload]++
			}
		}
		for i := range n {
			if seen[fmt.Sprint(i)] != 1 {
				t.Fatalf("%s: message %d delivered %d times", g, i, seen[fmt.Sprint(i)])
			}
		}
	}

	// dstool shows both groups; members finished their grants (the
	// acknowledgements are asynchronous, so wait for none to be held).
	wait.For(t, 10*time.Second, "dstool shows the groups with no grant held", func() bool {
		out := dstool(t, c.dsd.GRPCAddr, "shared")
		return strings.Contains(out, "$share/g1/rules/#") && strings.Contains(out, "$share/g2/rules/#") && !strings.Contains(out, "g1-0")
	})
	if out := dstool(t, c.dsd.GRPCAddr, "shared", "$share/g1/rules/#", "--json"); !strings.Contains(out, `"filter":"$share/g1/rules/#"`) || strings.Contains(out, "g2") {
		t.Fatalf("dstool shared $share/g1/rules/# --json:\n%s", out)
	}

	// No Local on a shared subscription: a Protocol Error, the connection closes.
	nl := dialSub(t, ctx, addr, pahoOpts{clientID: "nolocal", cleanStart: true})
	go func() { // no SUBACK comes: paho's call returns when its wait ends
		_, _ = nl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g1/rules/#", QoS: 1, NoLocal: true}}})
	}()
	select {
	case <-nl.c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("No Local on a shared subscription: the connection is still open")
	}
}

// publishOne publishes one QoS 1 message from a short-lived client.
func publishOne(t *testing.T, ctx context.Context, addr, topic, payload string, retain bool) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "one-" + topic, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

// TestCrashDSDShared kills dsd with SIGKILL while two shared groups (QoS 1
// and QoS 2, two members each, durable) take a publishing load: every
// acknowledged message reaches its group (lost = 0), a QoS 1 repeat carries
// DUP, and no QoS 2 message reaches two members.
func TestCrashDSDShared(t *testing.T) {
	kills := 3
	if testutil.Torture() {
		kills = 15
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 1)
	addr := func() string { return c.addr(0) }
	r := newLoadRun()
	subCtx, stopSubs := context.WithCancel(ctx)
	pubCtx, stopPubs := context.WithCancel(ctx)
	for _, qos := range []byte{1, 2} {
		for i := range 2 {
			r.subscriberAt(subCtx, fmt.Sprintf("q%d-m%d", qos, i), addr, fmt.Sprintf("$share/g/crash%d/#", qos), qos)
		}
		for p := range 2 {
			r.publisher(pubCtx, fmt.Sprintf("q%d-pub%d", qos, p), addr, qos, fmt.Sprintf("crash%d/t%%d", qos), 4)
		}
	}
	for i := range kills {
		before := r.acked.Load()
		wait.For(t, 30*time.Second, fmt.Sprintf("load before kill %d", i+1), func() bool { return r.acked.Load() >= before+200 })
		d, err := c.dsd.KillAndRestart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.dsd = d
	}
	before := r.acked.Load()
	wait.For(t, 30*time.Second, "load after the last kill", func() bool { return r.acked.Load() >= before+200 })
	stopPubs()
	r.pubs.Wait()
	defer func() {
		stopSubs()
		r.subs.Wait()
	}()
	type key struct {
		pub string
		seq uint64
	}
	check := func() (lost []key, problems []string) {
		acked := map[key]int{} // QoS
		readers := map[key]map[string]int{}
		undup := map[key]int{}
		for _, e := range r.h.Events() {
			k := key{e.Publisher, e.Seq}
			switch e.Kind {
			case checker.Ack:
				acked[k] = e.QoS
			case checker.Deliver:
				if readers[k] == nil {
					readers[k] = map[string]int{}
				}
				readers[k][e.Reader]++
				if !e.Dup {
					undup[k]++
				}
			}
		}
		for k, qos := range acked {
			switch {
			case len(readers[k]) == 0:
				lost = append(lost, k)
			case qos == 2 && len(readers[k]) > 1:
				problems = append(problems, fmt.Sprintf("QoS 2 %v reached %d members: %v", k, len(readers[k]), readers[k]))
			case undup[k] > 1:
				problems = append(problems, fmt.Sprintf("%v delivered %d times without DUP: %v", k, undup[k], readers[k]))
			}
		}
		return lost, problems
	}
	var lost []key
	var problems []string
	wait.Every(30*time.Second, 50*time.Millisecond, func() bool {
		lost, problems = check()
		return len(lost) == 0
	})
	if len(lost) > 0 || len(problems) > 0 {
		t.Fatalf("%d of %d acked messages lost (e.g. %v); %v", len(lost), r.acked.Load(), lost[:min(len(lost), 5)], problems[:min(len(problems), 5)])
	}
	t.Logf("%d dsd kills, %d acked messages to two shared groups: lost 0; member reconnects %d", kills, r.acked.Load(), r.disconnects.Load())
}
