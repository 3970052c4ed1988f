package storage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// feedRecorder collects CommitEvents.
type feedRecorder struct {
	mu     sync.Mutex
	events []CommitEvent
}

func (r *feedRecorder) add(ev CommitEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// touched reports whether some event since mark listed st.
func (r *feedRecorder) touched(st Stream, mark int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events[mark:] {
		for _, t := range ev.Touched {
			if t.Shard == st.Shard && t.Generation == st.Generation && string(t.StaticIndex) == string(st.StaticIndex) {
				return true
			}
		}
	}
	return false
}

func (r *feedRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func TestCommitFeedTouched(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		rec := &feedRecorder{}
		defer e.db.SubscribeCommits(rec.add)()
		must(e.db.Store(ctx, "c1", []*storagev1.Message{msg("a/b", "1")}, nil))
		ab := must(e.db.GetStreams("a/b", 0, -1))[0]
		// The event comes before the Store is answered.
		if !rec.touched(ab, 0) {
			t.Fatal("a/b: not touched")
		}
		must(e.db.Store(ctx, "c1", []*storagev1.Message{msg("x/y", "1")}, nil))
		mark := rec.len()
		must(e.db.Store(ctx, "c1", []*storagev1.Message{msg("x/y", "2")}, nil))
		if rec.touched(ab, mark) {
			t.Fatal("a/b touched by a store to x/y")
		}
		xy := must(e.db.GetStreams("x/y", 0, -1))[0]
		if !rec.touched(xy, mark) {
			t.Fatal("x/y: not touched")
		}
		must(e.db.AddGeneration(ab.Shard))
		waitFor(t, "generations changed", func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, ev := range rec.events {
				if ev.GenerationsChanged && ev.Shard == ab.Shard && ev.StreamsChanged {
					return true
				}
			}
			return false
		})
	}, allVariants[0], allVariants[3])
}

// TestCommitFeedVaryingEpoch: in a v1 (wildcard_optimized) generation a
// stream with varying levels is announced only once its epoch is readable
// (Next's rule), by the tick that completes the epoch. (In v2 every stream
// is readable, and announced, with its commit: TestV2ReadableAfterCommit.)
func TestCommitFeedVaryingEpoch(t *testing.T) {
	clock := newFakeClock(1 << 30)
	opts := Options{DataDir: t.TempDir(), NShards: 1, Now: clock.Now, IdleTickInterval: time.Hour}
	opts.Layout.Type = LayoutWildcardOptimized
	opts.Layout.WildcardThresholds = []int{2}
	db := must(Open(opts))
	defer db.Close()
	rec := &feedRecorder{}
	defer db.SubscribeCommits(rec.add)()
	ctx := context.Background()
	for i := range 5 {
		must(db.Store(ctx, "c", []*storagev1.Message{msg(fmt.Sprintf("d/%d", i), "1")}, nil))
	}
	var varying *Stream
	for _, st := range must(db.GetStreams("d/+", 0, 0)) {
		it := must(db.MakeIterator(st, "d/+", 0))
		es, _, _, err := db.Next(ctx, it, Limit{Max: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			varying = &st
			if rec.touched(st, 0) {
				t.Fatal("a stream whose epoch is not readable was announced")
			}
		} else if !rec.touched(st, 0) {
			t.Fatalf("readable stream %x not announced", st.StaticIndex)
		}
	}
	if varying == nil {
		t.Fatal("no stream with varying levels (layout thresholds)")
	}
	mark := rec.len()
	clock.Advance(time.Duration(2<<DefaultLayout().EpochBits) * time.Microsecond)
	if _, err := db.shards[0].do(ctx, &request{kind: reqTick}); err != nil {
		t.Fatal(err)
	}
	if !rec.touched(*varying, mark) {
		t.Fatal("the tick that completed the epoch did not announce the stream")
	}
	it := must(db.MakeIterator(*varying, "d/+", 0))
	if es, _, _, err := db.Next(ctx, it, Limit{Max: 10}); err != nil || len(es) == 0 {
		t.Fatalf("announced stream not readable: %d messages, %v", len(es), err)
	}
}

// TestCommitFeedV2Varying: in a v2 generation a stream with varying levels
// is announced by the commit that stored in it, with no tick, and is
// readable then.
func TestCommitFeedV2Varying(t *testing.T) {
	clock := newFakeClock(1 << 30)
	opts := Options{DataDir: t.TempDir(), NShards: 1, Now: clock.Now, IdleTickInterval: time.Hour}
	opts.Layout.WildcardThresholds = []int{2}
	db := must(Open(opts))
	defer db.Close()
	rec := &feedRecorder{}
	defer db.SubscribeCommits(rec.add)()
	ctx := context.Background()
	for i := range 5 {
		must(db.Store(ctx, "c", []*storagev1.Message{msg(fmt.Sprintf("d/%d", i), "1")}, nil))
	}
	varying := false
	for _, st := range must(db.GetStreams("d/+", 0, 0)) {
		varying = varying || strings.Contains(st.Structure, "+")
		if !rec.touched(st, 0) {
			t.Fatalf("stream %v not announced by its commit", st.Structure)
		}
		it := must(db.MakeIterator(st, "d/+", 0))
		if es, _, _, err := db.Next(ctx, it, Limit{Max: 10}); err != nil || len(es) == 0 {
			t.Fatalf("announced stream %v not readable: %d messages, %v", st.Structure, len(es), err)
		}
	}
	if !varying {
		t.Fatal("no stream with varying levels (layout thresholds)")
	}
}

func TestCommitFeedClose(t *testing.T) {
	db := must(Open(Options{DataDir: t.TempDir(), NShards: 1, IdleTickInterval: time.Hour}))
	rec := &feedRecorder{}
	db.SubscribeCommits(rec.add)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := len(rec.events); n == 0 || !rec.events[n-1].Closed {
		t.Fatalf("no Closed event: %+v", rec.events)
	}
}
