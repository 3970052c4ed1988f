package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// fakeClock is an injectable wall clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(us int64) *fakeClock { return &fakeClock{now: time.UnixMicro(us)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(us int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = time.UnixMicro(us)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// variant is one configuration a shared test body runs against.
type variant struct {
	name    string
	disk    bool
	nShards int
}

var allVariants = []variant{
	{"mem/1shard", false, 1},
	{"mem/4shards", false, 4},
	{"disk/1shard", true, 1},
	{"disk/4shards", true, 4},
}

// env is a test's storage: options that reopen the same data dir.
type env struct {
	t    testing.TB
	opts Options
	db   *DB
}

// run runs body once per variant (STYLE.md rule 15).
func run(t *testing.T, body func(t *testing.T, e *env), variants ...variant) {
	if len(variants) == 0 {
		variants = allVariants
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			opts := Options{NShards: v.nShards, IdleTickInterval: time.Hour}
			if v.disk {
				opts.DataDir = t.TempDir()
			} else {
				opts.DataDir = "data"
				opts.FS = vfs.NewMem()
			}
			e := &env{t: t, opts: opts}
			e.open()
			defer e.close()
			body(t, e)
		})
	}
}

func (e *env) open() {
	e.t.Helper()
	db, err := Open(e.opts)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.db = db
}

func (e *env) close() {
	e.t.Helper()
	if e.db != nil {
		if err := e.db.Close(); err != nil {
			e.t.Fatalf("close: %v", err)
		}
		e.db = nil
	}
}

func (e *env) reopen() {
	e.close()
	e.open()
}

func msg(topic, payload string) *storagev1.Message {
	return &storagev1.Message{Topic: topic, Payload: []byte(payload), Qos: 1}
}

// readAll reads every readable message matching filter from startUs, over
// all streams of all shards, to exhaustion.
func readAll(t testing.TB, db *DB, filter string, startUs int64) []*storagev1.Message {
	t.Helper()
	streams, err := db.GetStreams(filter, startUs, -1)
	if err != nil {
		t.Fatalf("get streams %q: %v", filter, err)
	}
	var out []*storagev1.Message
	for _, s := range streams {
		it, err := db.MakeIterator(s, filter, startUs)
		if err != nil {
			t.Fatalf("make iterator: %v", err)
		}
		for {
			es, next, _, err := db.Next(context.Background(), it, Limit{Max: 7})
			if err != nil {
				t.Fatalf("next: %v", err)
			}
			for _, e := range es {
				out = append(out, e.Message)
			}
			if len(es) == 0 {
				break
			}
			it = next
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, what, cond)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}
