package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// modelMsg is one message of the reference model.
type modelMsg struct {
	shard   int
	gen     uint64
	topic   string
	payload string
	ts      int64
}

// model is the naive in-memory reference: every stored message, and the
// current generation of every shard.
type model struct {
	msgs []modelMsg
	cur  []uint64
}

var modelTopics = func() []string {
	var out []string
	for _, a := range []string{"a", "b", "x", "$sys", ""} {
		if a != "" {
			out = append(out, a)
		}
		for _, b := range []string{"1", "2", "3", "4", "", "b"} {
			out = append(out, a+"/"+b)
			for _, c := range []string{"c", "d", "7"} {
				out = append(out, a+"/"+b+"/"+c)
			}
		}
	}
	return out
}()

var modelFilters = []string{"#", "a/#", "a/+", "a/+/c", "+/b/#", "$sys/#", "a/b/c", "+", "+/+", "x/4", "+/+/d", "/#", "+/1/+", "b/#", "$sys/+/c"}

// TestModel runs random stores, reads, generation adds and drops and
// reopens against the engine and a naive model, in every variant.
func TestModel(t *testing.T) {
	steps := 300
	if torture() {
		steps = 5000
	}
	run(t, func(t *testing.T, e *env) {
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 0))
		clock := newFakeClock(t0)
		e.opts.Now = clock.Now
		e.opts.Layout.WildcardThresholds = []int{3, 2}
		e.reopen()
		m := &model{cur: make([]uint64, e.db.NShards())}
		for i := range m.cur {
			m.cur[i] = 1
		}
		ctx := context.Background()
		payload := 0
		for step := 0; step < steps; step++ {
			clock.Advance(time.Duration(rng.IntN(300)) * time.Millisecond)
			switch r := rng.IntN(100); {
			case r < 70:
				client := fmt.Sprintf("c%d", rng.IntN(8))
				n := 1 + rng.IntN(5)
				msgs := make([]*storagev1.Message, n)
				for i := range msgs {
					payload++
					msgs[i] = msg(modelTopics[rng.IntN(len(modelTopics))], fmt.Sprint(payload))
				}
				res, err := e.db.Store(ctx, client, msgs, nil)
				if err != nil {
					t.Fatalf("step %d: store: %v", step, err)
				}
				for i, ms := range msgs {
					m.msgs = append(m.msgs, modelMsg{res.Shard, m.cur[res.Shard], ms.Topic, string(ms.Payload), res.TimestampsUs[i]})
				}
			case r < 85:
				filter := modelFilters[rng.IntN(len(modelFilters))]
				checkModel(t, e, m, clock, filter, step)
			case r < 90:
				shard := rng.IntN(e.db.NShards())
				g, err := e.db.AddGeneration(shard)
				if err != nil {
					t.Fatalf("step %d: add generation: %v", step, err)
				}
				m.cur[shard] = g.Id
			case r < 95:
				shard := rng.IntN(e.db.NShards())
				gens := e.db.Generations(shard)
				if len(gens) < 2 {
					continue
				}
				id := gens[rng.IntN(len(gens)-1)].Id
				if err := e.db.DropGeneration(shard, id); err != nil {
					t.Fatalf("step %d: drop generation: %v", step, err)
				}
				m.msgs = slices.DeleteFunc(m.msgs, func(x modelMsg) bool { return x.shard == shard && x.gen == id })
			default:
				e.reopen()
			}
		}
		for _, f := range modelFilters {
			checkModel(t, e, m, clock, f, steps)
		}
	})
}

// checkModel makes everything readable (two epochs later, every shard
// ticks), then reads the filter to exhaustion and compares with the model:
// the same messages, each topic in timestamp order.
func checkModel(t *testing.T, e *env, m *model, clock *fakeClock, filter string, step int) {
	t.Helper()
	clock.Advance(3 * time.Second)
	for i := 0; i < e.db.NShards(); i++ {
		tickForTest(t, e.db, i)
	}
	got := readAll(t, e.db, filter, 0)
	lastTs := map[string]int64{}
	var gotKeys []string
	for _, g := range got {
		if g.TimestampUs <= lastTs[g.PublisherClientId+" "+g.Topic] {
			t.Fatalf("step %d: filter %q: topic %q out of order", step, filter, g.Topic)
		}
		lastTs[g.PublisherClientId+" "+g.Topic] = g.TimestampUs
		gotKeys = append(gotKeys, fmt.Sprintf("%s|%s|%d", g.Topic, g.Payload, g.TimestampUs))
	}
	var want []string
	for _, x := range m.msgs {
		if lts.MatchTopic(filter, x.topic) {
			want = append(want, fmt.Sprintf("%s|%s|%d", x.topic, x.payload, x.ts))
		}
	}
	slices.Sort(gotKeys)
	slices.Sort(want)
	if !slices.Equal(gotKeys, want) {
		t.Fatalf("step %d: filter %q: got %d messages, want %d\n got: %s\nwant: %s", step, filter, len(gotKeys), len(want),
			strings.Join(gotKeys, " "), strings.Join(want, " "))
	}
}
