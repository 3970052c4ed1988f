package session

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stratamq/strata/gateway/packet"
)

// TestOutAliasesLRU checks the table against a plain model: a list of
// (topic, alias) from the most recently sent to the least; a new topic
// takes the lowest unused alias, then the last entry's.
func TestOutAliasesLRU(t *testing.T) {
	type entry struct {
		topic string
		alias uint16
	}
	for _, max := range []uint16{1, 2, 5, 64} {
		t.Run(fmt.Sprint("max=", max), func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(max)))
			a := newOutAliases(max)
			var model []entry
			for i := range 5000 {
				topic := fmt.Sprintf("t/%d", r.IntN(int(max)*2+1))
				at := slices.IndexFunc(model, func(e entry) bool { return e.topic == topic })
				got := a.byTopic[topic]
				switch {
				case at >= 0:
					if got != model[at].alias {
						t.Fatalf("step %d: %s has alias %d, want %d", i, topic, got, model[at].alias)
					}
					e := model[at]
					model = append([]entry{e}, slices.Delete(model, at, at+1)...)
					a.touch(got)
				default:
					if got != 0 {
						t.Fatalf("step %d: %s has alias %d, want none", i, topic, got)
					}
					want := uint16(len(model) + 1)
					if len(model) == int(max) {
						want = model[len(model)-1].alias
						model = model[:len(model)-1]
					}
					if n := a.next(); n != want {
						t.Fatalf("step %d: next alias %d, want %d", i, n, want)
					}
					a.assign(topic, want)
					model = append([]entry{{topic, want}}, model...)
				}
				if len(a.byTopic) != len(model) {
					t.Fatalf("step %d: %d topics, model %d", i, len(a.byTopic), len(model))
				}
			}
			// The list, walked from the head, is the model's order.
			var walk []entry
			for al := a.head; al != 0; al = a.slots[al-1].next {
				walk = append(walk, entry{a.slots[al-1].topic, al})
			}
			if !slices.Equal(walk, model) {
				t.Fatalf("list %v, model %v", walk, model)
			}
		})
	}
}

// BenchmarkOutboundAlias is the cost fit adds to each PUBLISH sent to a
// client with outbound aliases, round robin over topics 68 bytes long, and
// the wire bytes it saves per PUBLISH (negative: spent).
func BenchmarkOutboundAlias(b *testing.B) {
	for _, c := range []struct{ topics, aliases int }{{50, 64}, {500, 64}, {500, 1024}, {500, 0}} {
		b.Run(fmt.Sprintf("topics=%d/aliases=%d", c.topics, c.aliases), func(b *testing.B) {
			m := &Machine{version: packet.V5}
			if c.aliases > 0 {
				m.d.out.aliases = newOutAliases(uint16(c.aliases))
			}
			topics := make([]string, c.topics)
			for i := range topics {
				topics[i] = fmt.Sprintf("fleet/region-eu-west-1/site-%04d/device-%06d/telemetry/temperature", i/50, i)
			}
			payload := []byte("000000/00000")
			plain, aliased := 0, 0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p := &packet.Publish{Topic: topics[i%len(topics)], Payload: payload}
				if !m.fit(p) {
					b.Fatal("does not fit")
				}
				n, _ := p.Size(packet.V5)
				aliased += n
				plain += 2 + 2 + len(topics[i%len(topics)]) + 1 + len(payload)
			}
			b.ReportMetric(float64(plain-aliased)/float64(b.N), "bytes-saved/op")
		})
	}
}
