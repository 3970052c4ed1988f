package realclients

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// sharedRound: two members of the shared subscription $share/g/<topic>
// subscribe at qos, and a publisher of the same client library sends 20
// messages at qos, in four bursts. Each member must receive a part of
// them, and every message must reach exactly one member at QoS 2; at QoS 1
// at least one, a repeat only with DUP. No member may see the $share
// prefix in a topic name.
func sharedRound(t *testing.T, d driver, version, qos int, tag string) {
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	topic := "rc/" + tag + "/shared"
	filter := "$share/g/" + topic
	members := []string{tag + "/m1", tag + "/m2"}
	for i, m := range members {
		_, err := d.connect(ctx, m, connOpts{clientID: fmt.Sprintf("%s-m%d", tag, i+1), version: version, clean: true})
		mustDo(t, "member connect", err)
		codes, err := d.subscribe(ctx, m, filter, qos)
		mustDo(t, "member subscribe", err)
		if !slices.Equal(codes, []int{qos}) {
			hint := ""
			if len(codes) == 1 && (codes[0] == 0x9E || codes[0] == 0x80) {
				hint = " (0x9E: shared subscriptions not supported; 0x80: refused)"
			}
			t.Fatalf("SUBACK %v for %s at QoS %d, want [%d]%s", codes, filter, qos, qos, hint)
		}
	}
	want := payloads("s-", 20)
	pub := tag + "/pub"
	_, err := d.connect(ctx, pub, connOpts{clientID: tag + "-pub", version: version, clean: true})
	mustDo(t, "publisher connect", err)
	distinct := func() map[string]int {
		n := map[string]int{}
		for _, m := range members {
			for _, msg := range d.messages(m) {
				n[msg.Payload]++
			}
		}
		return n
	}
	// Four bursts of five, each once the group has the one before: a
	// broker may hand a burst to one member as a whole (Strata grants a
	// member a batch at a time), and round_robin then gives the next
	// burst to the other.
	const burst = 5
	for i := 0; i < len(want); i += burst {
		mustDo(t, "publish", d.publish(ctx, pub, topic, want[i:i+burst], qos))
		wait.For(t, 10*time.Second, fmt.Sprintf("the first %d messages at the group's members", i+burst), func() bool { return len(distinct()) >= i+burst })
	}
	mustDo(t, "publisher disconnect", d.disconnect(ctx, pub))
	for _, m := range members {
		mustDo(t, "member disconnect", d.disconnect(ctx, m))
	}

	seen := map[string]int{}
	var parts, repeats []string
	nRepeats := 0
	for _, m := range members {
		got := d.messages(m)
		parts = append(parts, fmt.Sprintf("%s %d", m, len(got)))
		if len(got) == 0 {
			t.Errorf("member %s received none of the %d messages: each member should receive a part", m, len(want))
		}
		for _, msg := range got {
			if msg.Topic != topic || msg.QoS != qos || msg.Retain {
				t.Errorf("member %s: message %+v, want topic %s, QoS %d, no RETAIN", m, msg, topic, qos)
			}
			if !slices.Contains(want, msg.Payload) {
				t.Errorf("member %s: message %+v was never published", m, msg)
				continue
			}
			seen[msg.Payload]++
			if seen[msg.Payload] > 1 && (qos == 2 || !msg.Dup) {
				if len(repeats) < 3 {
					repeats = append(repeats, fmt.Sprintf("%s at %s (DUP %t)", msg.Payload, m, msg.Dup))
				}
				nRepeats++
			}
		}
	}
	if nRepeats > 0 {
		t.Errorf("%d messages received again at QoS %d, for example %s: each message goes to one member, once (at QoS 1 a repeat carries DUP)", nRepeats, qos, strings.Join(repeats, ", "))
	}
	for _, p := range want {
		if seen[p] == 0 {
			t.Errorf("%s reached no member", p)
		}
	}
	t.Logf("%d messages at QoS %d shared: %s", len(want), qos, strings.Join(parts, ", "))
}

// sharedRounds runs sharedRound at QoS 1 and 2 for each MQTT version.
func sharedRounds(t *testing.T, d driver, tag string, versions ...int) {
	for _, v := range versions {
		name := map[int]string{4: "v3.1.1", 5: "v5"}[v]
		for _, qos := range []int{1, 2} {
			t.Run(fmt.Sprintf("shared/%s/qos%d", name, qos), func(t *testing.T) {
				sharedRound(t, d, v, qos, fmt.Sprintf("%s-%s-q%d", tag, strings.ReplaceAll(name, ".", ""), qos))
			})
		}
	}
}
