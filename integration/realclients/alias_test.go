package realclients

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// aliasRound: a subscriber announces Topic Alias Maximum 2 and receives
// messages on three topics, in runs that reuse a topic and cycle through
// all three (so aliases are assigned, used alone, and taken over by
// another topic). Every message must arrive under its own topic name, in
// order per topic; from Strata every one must carry an alias within the
// maximum (the gateway aliases every topic of 4 bytes or more). Only
// clients that resolve aliases themselves run it (MQTT.js).
func aliasRound(t *testing.T, b *broker, d driver, tag string) {
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	const maxAlias = 2
	topic := func(k int) string { return fmt.Sprintf("rc/%s/alias/topic-%d", tag, k) }
	sub, pub := tag+"/sub", tag+"/pub"
	_, err := d.connect(ctx, sub, connOpts{clientID: tag + "-sub", version: 5, clean: true, topicAliasMax: maxAlias})
	mustDo(t, "subscriber connect", err)
	codes, err := d.subscribe(ctx, sub, "rc/"+tag+"/alias/+", 1)
	mustDo(t, "subscribe", err)
	if !slices.Equal(codes, []int{1}) {
		t.Fatalf("SUBACK %v, want [1]", codes)
	}
	_, err = d.connect(ctx, pub, connOpts{clientID: tag + "-pub", version: 5, clean: true})
	mustDo(t, "publisher connect", err)
	// Each publish waits for its acknowledgement, so the subscriber gets
	// the runs in this order.
	runs := []struct{ k, n int }{{0, 3}, {1, 2}, {2, 1}, {0, 1}, {1, 1}, {2, 2}, {0, 1}}
	wantTopic := map[string]string{}
	var want []string
	seq := 0
	for _, r := range runs {
		var ps []string
		for range r.n {
			p := fmt.Sprintf("a-%02d", seq)
			seq++
			ps = append(ps, p)
			wantTopic[p] = topic(r.k)
		}
		want = append(want, ps...)
		mustDo(t, "publish", d.publish(ctx, pub, topic(r.k), ps, 1))
	}
	mustDo(t, "publisher disconnect", d.disconnect(ctx, pub))
	waitMessages(t, d, sub, len(want))
	mustDo(t, "subscriber disconnect", d.disconnect(ctx, sub))

	got := d.messages(sub)
	var gotPayloads []string
	aliased := 0
	for _, m := range got {
		gotPayloads = append(gotPayloads, m.Payload)
		if m.Topic != wantTopic[m.Payload] {
			t.Errorf("message %s under topic %q, want %q (resolved from alias %d)", m.Payload, m.Topic, wantTopic[m.Payload], m.Alias)
		}
		if m.Alias > maxAlias {
			t.Errorf("message %s carried Topic Alias %d, above the maximum %d the client announced", m.Payload, m.Alias, maxAlias)
		}
		if m.Alias > 0 {
			aliased++
		}
	}
	if !slices.Equal(gotPayloads, want) {
		t.Fatalf("received\n  %s\nwant, in this order and once each\n  %s", strings.Join(gotPayloads, " "), strings.Join(want, " "))
	}
	if b.name == "strata" && aliased != len(got) {
		t.Errorf("%d of %d messages carried a Topic Alias, want all", aliased, len(got))
	}
	t.Logf("%s: %d messages on 3 topics with Topic Alias Maximum %d, %d of them with an alias", b.name, len(got), maxAlias, aliased)
}
