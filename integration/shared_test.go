package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

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
			publishAll(t, ctx, []string{c.addr(0)}, 1, count, 8, "k/t%d", qos)
			c.gateways[1].Kill()
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
			// each by default) of the kill.
			wait.For(t, 4*time.Second, "every message delivered after the kill", func() bool {
				by, _ := received()
				return len(by) >= count
			})
			t.Logf("QoS %d: every message delivered %v after the gateway was killed", qos, time.Since(killed).Round(time.Millisecond))
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
