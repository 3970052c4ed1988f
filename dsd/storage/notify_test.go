package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not notified", what)
	}
}

func TestNotifyReadableAndStreams(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		shard := e.db.ShardOf("c1")
		readable, streams, any := e.db.ReadableClockChanged(shard), e.db.StreamsChanged(shard), e.db.StreamsChanged(-1)
		if isClosed(readable) || isClosed(streams) || isClosed(any) {
			t.Fatal("notified before any write")
		}
		res := must(e.db.Store(ctx, "c1", []*storagev1.Message{msg("a/b", "1")}, nil))
		// The notification fires before the Store is answered.
		if !isClosed(readable) || !isClosed(streams) || !isClosed(any) {
			t.Fatalf("first message of a new topic: readable %v streams %v any %v", isClosed(readable), isClosed(streams), isClosed(any))
		}
		if r := e.db.ReadableClock(shard); r < res.TimestampsUs[0] {
			t.Fatalf("readable clock %d < %d after the notification", r, res.TimestampsUs[0])
		}

		// A known topic advances the clock but learns no stream.
		readable, streams = e.db.ReadableClockChanged(shard), e.db.StreamsChanged(shard)
		must(e.db.Store(ctx, "c1", []*storagev1.Message{msg("a/b", "2")}, nil))
		if !isClosed(readable) || isClosed(streams) {
			t.Fatalf("known topic: readable %v streams %v", isClosed(readable), isClosed(streams))
		}

		// Generation add and drop change the streams.
		streams = e.db.StreamsChanged(shard)
		g := must(e.db.AddGeneration(shard))
		if !isClosed(streams) {
			t.Fatal("add generation: not notified")
		}
		streams = e.db.StreamsChanged(shard)
		if err := e.db.DropGeneration(shard, g.Id-1); err != nil {
			t.Fatal(err)
		}
		if !isClosed(streams) {
			t.Fatal("drop generation: not notified")
		}

		// Other shards are not woken by this shard's streams.
		if e.db.NShards() > 1 {
			other := (shard + 1) % e.db.NShards()
			ch := e.db.StreamsChanged(other)
			must(e.db.Store(ctx, "c1", []*storagev1.Message{msg("x/y", "1")}, nil))
			if isClosed(ch) {
				t.Fatal("another shard's streams notified")
			}
		}

		// Close wakes every waiter, now and later.
		db := e.db
		readable = db.ReadableClockChanged(shard)
		e.close()
		waitClosed(t, "close", readable)
		waitClosed(t, "after close", db.StreamsChanged(-1))
	})
}

// TestNotifyIdleTick: the idle tick of a v1 (wildcard_optimized) current
// generation advances the readable clock and wakes readers. v2 generations
// do not tick (TestV2NoIdleTick).
func TestNotifyIdleTick(t *testing.T) {
	clock := newFakeClock(1 << 30)
	opts := Options{DataDir: t.TempDir(), NShards: 1, Now: clock.Now, IdleTickInterval: time.Hour}
	opts.Layout.Type = LayoutWildcardOptimized
	db := must(Open(opts))
	defer db.Close()
	must(db.Store(context.Background(), "c", []*storagev1.Message{msg("a/b", "1")}, nil))
	ch := db.ReadableClockChanged(0)
	clock.Advance(time.Duration(2<<DefaultLayout().EpochBits) * time.Microsecond)
	if _, err := db.shards[0].do(context.Background(), &request{kind: reqTick}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, "tick", ch)
}

func TestIteratorStream(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		must(e.db.Store(context.Background(), "c1", []*storagev1.Message{msg("a/b", "1")}, nil))
		ss := must(e.db.GetStreams("a/b", 0, -1))
		it := must(e.db.MakeIterator(ss[0], "a/b", 0))
		st := must(e.db.IteratorStream(it))
		if st.Shard != ss[0].Shard || st.Generation != ss[0].Generation || string(st.StaticIndex) != string(ss[0].StaticIndex) {
			t.Fatalf("IteratorStream = %+v, want %+v", st, ss[0])
		}
		if _, err := e.db.IteratorStream([]byte("junk")); !errors.Is(err, ErrInvalidIterator) {
			t.Fatalf("junk: %v", err)
		}
	}, allVariants[0])
}

func TestNextMaxBytes(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		big := strings.Repeat("x", 10_000)
		var msgs []*storagev1.Message
		for _, p := range []string{"s1", big, "s2", "s3", big, big} {
			msgs = append(msgs, msg("t", p))
		}
		must(e.db.Store(ctx, "c", msgs, nil))
		ss := must(e.db.GetStreams("t", 0, -1))
		it := must(e.db.MakeIterator(ss[0], "t", 0))
		var sizes []int
		for {
			es, next, _, err := e.db.Next(ctx, it, Limit{Max: 100, MaxBytes: 5_000})
			if err != nil {
				t.Fatal(err)
			}
			if len(es) == 0 {
				break
			}
			sizes = append(sizes, len(es))
			it = next
		}
		// s1 | big alone | s2 s3 | big | big
		want := []int{1, 1, 2, 1, 1}
		if len(sizes) != len(want) {
			t.Fatalf("batch sizes %v, want %v", sizes, want)
		}
		for i := range want {
			if sizes[i] != want[i] {
				t.Fatalf("batch sizes %v, want %v", sizes, want)
			}
		}
	}, allVariants[0])
}
