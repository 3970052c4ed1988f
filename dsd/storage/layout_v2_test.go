package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// storedMsg is what the brute-force model remembers of a stored message.
type storedMsg struct {
	topic string
	ts    int64
}

// v2Levels are the values of the varying levels in the property test: 64
// values, so that with 8-bit level hashes many pairs collide.
func v2Levels() []string {
	out := make([]string, 64)
	for i := range out {
		out[i] = fmt.Sprintf("d%02d", i)
	}
	return out
}

// TestV2LeapfrogMatchesBruteForce stores random topics into wide
// wildcard_optimized_v2 streams (fleet/+/+ and fleet/+/x/+) with 8-bit level
// hashes, then reads random filters (constants and "+" at varying levels,
// "#") with random batch limits, and compares the result with a brute-force
// MatchTopic over every stored message. Replaying each batch with Count and
// with End must return the same messages.
//
// It runs with the tail cache off, with a cache that holds everything, and
// with one so small that it evicts all along (readers fall below its since
// mark and go back to Pebble).
func TestV2LeapfrogMatchesBruteForce(t *testing.T) {
	for _, cache := range []struct {
		name  string
		bytes int
	}{{"no tail cache", -1}, {"tail cache", 0}, {"small tail cache", 4 << 10}} {
		t.Run(cache.name, func(t *testing.T) { testV2LeapfrogMatchesBruteForce(t, cache.bytes) })
	}
}

func testV2LeapfrogMatchesBruteForce(t *testing.T, tailCacheBytes int) {
	rng := rand.New(rand.NewPCG(1, 2))
	opts := Options{
		DataDir: "data", FS: vfs.NewMem(), NShards: 1, IdleTickInterval: time.Hour, TailCacheBytes: tailCacheBytes,
		Layout: LayoutConfig{
			Type: LayoutWildcardOptimizedV2, BitsPerTopicLevel: 8, TopicIndexBytes: 4,
			WildcardThresholds: []int{100, 0}, MaxTrieStates: 1000,
		},
	}
	db := must(Open(opts))
	defer db.Close()
	levels := v2Levels()
	// A few values are used often, so that narrow filters have matches.
	pick := func() string {
		if rng.IntN(3) == 0 {
			return levels[rng.IntN(4)]
		}
		return levels[rng.IntN(len(levels))]
	}
	var stored []storedMsg
	ctx := context.Background()
	for b := 0; b < 60; b++ {
		var msgs []*storagev1.Message
		for i := 0; i < 1+rng.IntN(40); i++ {
			topic := "fleet/" + pick() + "/" + pick()
			if rng.IntN(4) == 0 {
				topic = "fleet/" + pick() + "/x/" + pick()
			}
			msgs = append(msgs, msg(topic, fmt.Sprint(len(stored)+i)))
		}
		res := must(db.Store(ctx, "c", msgs, nil))
		for i, m := range msgs {
			stored = append(stored, storedMsg{m.Topic, res.TimestampsUs[i]})
		}
	}

	randomFilter := func() string {
		switch rng.IntN(10) {
		case 0:
			return "#"
		case 1:
			return "fleet/#"
		case 2:
			return "fleet/" + pick() + "/#"
		}
		level := func() string {
			switch rng.IntN(5) {
			case 0, 1:
				return "+"
			case 2:
				return "zz" // matches nothing
			}
			return pick()
		}
		if rng.IntN(3) == 0 {
			return "fleet/" + level() + "/x/" + level()
		}
		return "fleet/" + level() + "/" + level()
	}

	for iter := 0; iter < 150; iter++ {
		filter := randomFilter()
		var want []storedMsg
		for _, m := range stored {
			if lts.MatchTopic(filter, m.topic) {
				want = append(want, m)
			}
		}
		got := readV2(t, db, filter, rng)
		slices.SortFunc(got, func(a, b storedMsg) int { return int(a.ts - b.ts) })
		if !slices.Equal(got, want) {
			t.Fatalf("filter %q: got %d messages, want %d\ngot  %v\nwant %v", filter, len(got), len(want), got, want)
		}
	}
	if c := db.shards[0].stats.collisions.Load(); c == 0 {
		t.Errorf("no hash collision was met; the test does not cover them")
	} else {
		t.Logf("hash collisions met: %d", c)
	}
	if ts := db.tail.stats(); tailCacheBytes >= 0 && (ts.Hits == 0 || ts.Misses == 0) {
		t.Errorf("tail cache: %d hits, %d misses; the test should take both paths", ts.Hits, ts.Misses)
	} else {
		t.Logf("tail cache: %+v", ts)
	}
}

// readV2 reads every stream of filter with random Max and MaxBytes limits,
// checking that each stream is in timestamp order and that each batch
// replays the same with Count and with End.
func readV2(t *testing.T, db *DB, filter string, rng *rand.Rand) []storedMsg {
	t.Helper()
	ctx := context.Background()
	streams := must(db.GetStreams(filter, 0, -1))
	var out []storedMsg
	for _, s := range streams {
		it := must(db.MakeIterator(s, filter, 0))
		lastTs := int64(-1)
		for {
			lim := Limit{Max: 1 + rng.IntN(20)}
			if rng.IntN(4) == 0 {
				lim.MaxBytes = 1 + rng.IntN(200)
			}
			es, next, _, err := db.Next(ctx, it, lim)
			if err != nil {
				t.Fatalf("filter %q: next: %v", filter, err)
			}
			if len(es) == 0 {
				break
			}
			replay, _, _, err := db.Next(ctx, it, Limit{Count: len(es)})
			if err != nil || !sameEntries(replay, es) {
				t.Fatalf("filter %q: replay with Count %d differs (%v)", filter, len(es), err)
			}
			upTo, _, _, err := db.Next(ctx, it, Limit{End: next})
			if err != nil || !sameEntries(upTo, es) {
				t.Fatalf("filter %q: replay with End differs (%v)", filter, err)
			}
			for _, e := range es {
				if e.Message.TimestampUs <= lastTs {
					t.Fatalf("filter %q: stream %s out of order", filter, s.Structure)
				}
				lastTs = e.Message.TimestampUs
				out = append(out, storedMsg{e.Message.Topic, e.Message.TimestampUs})
			}
			it = next
		}
	}
	return out
}

func sameEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return string(x.Key) == string(y.Key) && proto.Equal(x.Message, y.Message)
	})
}

// TestV2ReadableAfterCommit: in a v2 current generation, a message of a
// stream with varying levels is readable as soon as its Store returns,
// with the wall clock frozen (so no epoch could have ended) and no idle
// tick.
func TestV2ReadableAfterCommit(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// Enough devices that sensors/+/temp is learned as varying.
		for d := 0; d < 150; d++ {
			topic := fmt.Sprintf("sensors/dev%03d/temp", d)
			must(e.db.Store(ctx, fmt.Sprintf("dev%03d", d), []*storagev1.Message{msg(topic, "v")}, nil))
			for _, f := range []string{topic, "sensors/+/temp"} {
				got := readAll(t, e.db, f, 0)
				if !slices.ContainsFunc(got, func(m *storagev1.Message) bool { return m.Topic == topic }) {
					t.Fatalf("device %d: %s not readable through %q right after its Store", d, topic, f)
				}
			}
		}
		var wide bool
		for _, s := range must(e.db.GetStreams("sensors/+/temp", 0, -1)) {
			wide = wide || strings.Contains(s.Structure, "+")
		}
		if !wide {
			t.Fatal("no stream with varying levels: the test checks nothing")
		}
	}, variant{"mem/4shards", false, 4})
}

// TestV2NoIdleTick: an idle shard whose current generation is v2 does not
// tick, whatever the wall clock does: nothing waits for an epoch.
func TestV2NoIdleTick(t *testing.T) {
	clock := newFakeClock(1 << 30)
	db := must(Open(Options{DataDir: "data", FS: vfs.NewMem(), NShards: 1, Now: clock.Now, IdleTickInterval: time.Hour}))
	defer db.Close()
	must(db.Store(context.Background(), "c", []*storagev1.Message{msg("a/b", "1")}, nil))
	R := db.ReadableClock(0)
	clock.Advance(10 * time.Second)
	tickForTest(t, db, 0)
	if got := db.ReadableClock(0); got != R || db.shards[0].stats.ticks.Load() != 0 {
		t.Fatalf("readable clock %d -> %d, ticks %d: a v2 shard ticked", R, got, db.shards[0].stats.ticks.Load())
	}
}

// TestV2BadEndIterator: an end iterator whose last seen key is not a data
// key of the stream is refused (the v2 read takes its last 8 bytes as a
// time), never a panic.
func TestV2BadEndIterator(t *testing.T) {
	db := must(Open(Options{DataDir: "data", FS: vfs.NewMem(), NShards: 1, IdleTickInterval: time.Hour}))
	defer db.Close()
	must(db.Store(context.Background(), "c", []*storagev1.Message{msg("a/b", "1")}, nil))
	s := must(db.GetStreams("a/b", 0, -1))[0]
	itBytes := must(db.MakeIterator(s, "a/b", 0))
	it := must(decodeIterator(itBytes))
	for _, last := range [][]byte{{1}, append(slices.Clone(it.StaticIndex), 1, 2, 3), make([]byte, len(it.StaticIndex)+8)} {
		end := proto.Clone(it).(*storagev1.Iterator)
		end.LastSeenKey = last
		if _, _, _, err := db.Next(context.Background(), itBytes, Limit{End: encodeIterator(end)}); !errors.Is(err, ErrInvalidIterator) {
			t.Errorf("end key %x: %v, want ErrInvalidIterator", last, err)
		}
	}
}
