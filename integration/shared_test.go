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
// × count arrived in all, exactly once unless allowDup (then a repeat must
// carry DUP).
func checkEachOnce(t *testing.T, all []delivery, publishers, count int, allowDup bool) {
	t.Helper()
	seen := map[string]int{}
	for _, d := range all {
		seen[d.payload]++
		if seen[d.payload] > 1 && (!allowDup || !d.dup) {
			t.Fatalf("%s delivered %d times (dup flag %t)", d.payload, seen[d.payload], d.dup)
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
