package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// TestTailCacheLiveReaders: readers that follow the live end of a wide v2
// stream (one per filter, each reading after every Store) receive exactly
// what a brute-force match over everything stored gives, in order, with a
// cache small enough to evict while they read, across a generation added
// (its streams start fresh in the cache) and the old one dropped.
func TestTailCacheLiveReaders(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	opts := Options{
		DataDir: "data", FS: vfs.NewMem(), NShards: 1, IdleTickInterval: time.Hour, TailCacheBytes: 16 << 10,
		Layout: LayoutConfig{Type: LayoutWildcardOptimizedV2, BitsPerTopicLevel: 8, TopicIndexBytes: 4,
			WildcardThresholds: []int{10, 0}, MaxTrieStates: 1000},
	}
	db := must(Open(opts))
	defer db.Close()
	ctx := context.Background()
	filters := []string{"dev/+/t", "dev/d03/t", "dev/#", "#", "dev/d07/+"}
	var stored []storedMsg
	got := make([][]storedMsg, len(filters))
	its := make([]map[string][]byte, len(filters)) // per filter: stream structure -> iterator
	for i := range its {
		its[i] = map[string][]byte{}
	}
	readAll := func(gen uint64) {
		for i, f := range filters {
			for _, s := range must(db.GetStreams(f, 0, -1)) {
				if s.Generation != gen {
					continue
				}
				key := fmt.Sprintf("%d/%x", s.Generation, s.StaticIndex)
				it := its[i][key]
				if it == nil {
					it = must(db.MakeIterator(s, f, 0))
				}
				for {
					es, next, _, err := db.Next(ctx, it, Limit{Max: 1 + rng.IntN(8)})
					if err != nil {
						t.Fatal(err)
					}
					it = next
					if len(es) == 0 {
						break
					}
					for _, e := range es {
						got[i] = append(got[i], storedMsg{e.Message.Topic, e.Message.TimestampUs})
					}
				}
				its[i][key] = it
			}
		}
	}
	gen := uint64(1)
	for b := 0; b < 300; b++ {
		if b == 150 {
			g := must(db.AddGeneration(0))
			readAll(gen) // the old generation's last messages
			gen = g.Id
		}
		if b == 200 {
			if err := db.DropGeneration(0, 1); err != nil {
				t.Fatal(err)
			}
		}
		var msgs []*storagev1.Message
		for j := 0; j < 1+rng.IntN(6); j++ {
			msgs = append(msgs, msg(fmt.Sprintf("dev/d%02d/t", rng.IntN(20)), fmt.Sprint(len(stored)+j)))
		}
		res := must(db.Store(ctx, "c", msgs, nil))
		for j, m := range msgs {
			stored = append(stored, storedMsg{m.Topic, res.TimestampsUs[j]})
		}
		readAll(gen)
	}
	for i, f := range filters {
		var want []storedMsg
		for _, m := range stored {
			if lts.MatchTopic(f, m.topic) {
				want = append(want, m)
			}
		}
		g := slices.Clone(got[i])
		slices.SortFunc(g, func(a, b storedMsg) int { return int(a.ts - b.ts) })
		if !slices.Equal(g, want) {
			t.Fatalf("filter %q: read %d messages, want %d", f, len(g), len(want))
		}
	}
	ts := db.tail.stats()
	if ts.Hits == 0 || ts.Evicted == 0 {
		t.Errorf("tail cache %+v: the test should read from it and evict", ts)
	}
	t.Logf("tail cache: %+v", ts)
}

// BenchmarkNextLiveTail: 32 readers of one topic each read the message
// just stored, as 32 subscribers at the live end do; from the tail cache
// and, for comparison, from Pebble.
func BenchmarkNextLiveTail(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int
	}{{"tail cache", 0}, {"pebble", -1}} {
		b.Run(c.name, func(b *testing.B) {
			db := must(Open(Options{DataDir: "data", FS: vfs.NewMem(), NShards: 1, IdleTickInterval: time.Hour, TailCacheBytes: c.bytes, UnsafeNoSync: true}))
			defer db.Close()
			ctx := context.Background()
			must(db.Store(ctx, "c", []*storagev1.Message{msg("a/b", "0")}, nil))
			s := must(db.GetStreams("a/b", 0, -1))[0]
			its := make([][]byte, 32)
			for i := range its {
				its[i] = must(db.MakeIterator(s, "a/b", 0))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				must(db.Store(ctx, "c", []*storagev1.Message{msg("a/b", "x")}, nil))
				for i, it := range its {
					es, next, _, err := db.Next(ctx, it, Limit{Max: 100})
					if err != nil || len(es) == 0 {
						b.Fatalf("next: %d messages, %v", len(es), err)
					}
					its[i] = next
				}
			}
		})
	}
}
