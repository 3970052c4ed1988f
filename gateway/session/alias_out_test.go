package session

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
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
