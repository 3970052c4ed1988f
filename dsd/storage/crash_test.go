package storage

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// crashStore is one Store of the crash workload.
type crashStore struct {
	client  string
	epoch   uint64
	seq     uint64
	topics  []string
	payload string
}

// crashWorkload is the deterministic sequence of Stores of one run, with
// an idle tick and a generation added halfway.
func crashWorkload() []crashStore {
	var out []crashStore
	seqs := map[string]uint64{}
	for i := 0; i < 24; i++ {
		c := fmt.Sprintf("p%d", i%3)
		seqs[c]++
		n := 1 + i%3
		topics := make([]string, n)
		for j := range topics {
			topics[j] = fmt.Sprintf("dev/%d/m%d", (i+j)%5, j)
		}
		out = append(out, crashStore{client: c, epoch: 1, seq: seqs[c], topics: topics, payload: fmt.Sprintf("s%d", i)})
		seqs[c] += uint64(n) - 1
	}
	return out
}

// TestCrashEveryWrite crashes the engine at the k-th filesystem write for
// every k until a run completes, keeping only synced data (Pebble's
// crash-clone filesystem). After each crash it reopens and checks that
// every acked Store is fully present, that the trie, data and producer
// state agree (a retry of an acked Store is a duplicate, the stored topics
// are found through GetStreams), and that timestamps keep increasing with
// the wall clock set back.
func TestCrashEveryWrite(t *testing.T) {
	violations := crashEveryWrite(t)
	if violations > 0 {
		t.Fatalf("%d crash points lost acked data", violations)
	}
}

// TestCrashSelfTest proves that the crash check can fail: with
// UnsafeNoSync, a crash after every Store was acked loses acked Stores.
func TestCrashSelfTest(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		mem := vfs.NewCrashableMem()
		clock := newFakeClock(t0)
		o := Options{DataDir: "data", FS: mem, NShards: 2, IdleTickInterval: time.Hour, Now: clock.Now, UnsafeNoSync: unsafe}
		db, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		var acked []crashStore
		for _, w := range crashWorkload() {
			msgs := make([]*storagev1.Message, len(w.topics))
			for j, tp := range w.topics {
				msgs[j] = msg(tp, fmt.Sprintf("%s.%d", w.payload, j))
			}
			if _, err := db.Store(context.Background(), w.client, msgs, &Producer{ClientID: w.client, Epoch: w.epoch, FirstSeq: w.seq}); err != nil {
				t.Fatal(err)
			}
			acked = append(acked, w)
		}
		clone := mem.CrashClone(vfs.CrashCloneCfg{})
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		o.FS = clone
		if db, err = Open(o); err != nil {
			t.Fatal(err)
		}
		lost := checkCrashState(t, db, acked, -1)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if lost != unsafe {
			t.Fatalf("UnsafeNoSync=%v: lost=%v", unsafe, lost)
		}
	}
}

// crashEveryWrite returns the number of crash points with lost acked data.
func crashEveryWrite(t *testing.T) int {
	mem := vfs.NewCrashableMem()
	var (
		countdown atomic.Int64
		crashFS   atomic.Pointer[vfs.MemFS]
	)
	countdown.Store(math.MaxInt64)
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind.ReadOrWrite() == errorfs.OpIsWrite && countdown.Add(-1) == -1 {
			crashFS.Store(mem.CrashClone(vfs.CrashCloneCfg{}))
		}
		return nil
	})
	triggered := func() bool { return countdown.Load() < 0 }
	clock := newFakeClock(t0)
	base := Options{DataDir: "data", NShards: 2, IdleTickInterval: time.Hour, Now: clock.Now,
		Layout: LayoutConfig{WildcardThresholds: []int{2, 2}}}
	// Create the data dir once, uncrashed.
	{
		o := base
		o.FS = mem
		db, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	pristine := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
	work := crashWorkload()
	violations := 0
	limit := math.MaxInt64
	if !torture() {
		limit = 400
	}
	for k := int64(0); k < int64(limit); k++ {
		mem = pristine.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
		crashFS.Store(nil)
		clock.Set(t0)
		o := base
		o.FS = errorfs.Wrap(mem, inj)
		db, err := Open(o)
		if err != nil {
			t.Fatalf("k=%d: open: %v", k, err)
		}
		countdown.Store(k)
		var acked []crashStore
		for i, w := range work {
			if i == len(work)/2 {
				clock.Advance(3 * time.Second)
				tickForTest(t, db, 0)
				if _, err := db.AddGeneration(1); err != nil {
					t.Fatalf("k=%d: add generation: %v", k, err)
				}
			}
			clock.Advance(10 * time.Millisecond)
			msgs := make([]*storagev1.Message, len(w.topics))
			for j, tp := range w.topics {
				msgs[j] = msg(tp, fmt.Sprintf("%s.%d", w.payload, j))
			}
			_, err := db.Store(context.Background(), w.client, msgs, &Producer{ClientID: w.client, Epoch: w.epoch, FirstSeq: w.seq})
			if triggered() {
				break
			}
			if err != nil {
				t.Fatalf("k=%d: store: %v", k, err)
			}
			acked = append(acked, w)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("k=%d: close: %v", k, err)
		}
		if !triggered() {
			t.Logf("no crash at write %d: %d crash points checked", k, k)
			return violations
		}
		// Reopen on the crash clone, with the wall clock set back.
		clock.Set(t0 - int64(time.Hour/time.Microsecond))
		o = base
		o.FS = crashFS.Load()
		db, err = Open(o)
		if err != nil {
			t.Fatalf("k=%d: reopen after crash: %v", k, err)
		}
		if lost := checkCrashState(t, db, acked, k); lost {
			violations++
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("stopped after %d crash points (set STRATA_TORTURE=1 for all)", limit)
	return violations
}

// checkCrashState verifies a reopened DB against the acked Stores. It
// reports lost acked data; broken invariants fail the test at once.
func checkCrashState(t *testing.T, db *DB, acked []crashStore, k int64) (lost bool) {
	t.Helper()
	all := readAllEventually(t, db)
	present := map[string]int64{}
	maxTs := map[int]int64{}
	for _, m := range all {
		present[string(m.Payload)] = m.TimestampUs
		sh := db.ShardOf(m.PublisherClientId)
		maxTs[sh] = max(maxTs[sh], m.TimestampUs)
	}
	for _, w := range acked {
		for j := range w.topics {
			if _, ok := present[fmt.Sprintf("%s.%d", w.payload, j)]; !ok {
				t.Logf("k=%d: acked store %s (seq %d) lost", k, w.payload, w.seq)
				return true
			}
		}
	}
	// Batches are atomic: a Store is present whole or not at all.
	for _, w := range crashWorkload() {
		n := 0
		for j := range w.topics {
			if _, ok := present[fmt.Sprintf("%s.%d", w.payload, j)]; ok {
				n++
			}
		}
		if n != 0 && n != len(w.topics) {
			t.Fatalf("k=%d: store %s is partly present (%d of %d)", k, w.payload, n, len(w.topics))
		}
		// Producer state agrees with the data: a retry of a present Store is
		// a duplicate.
		if n > 0 {
			msgs := []*storagev1.Message{msg("retry", "retry")}
			res, err := db.Store(context.Background(), w.client, msgs, &Producer{ClientID: w.client, Epoch: w.epoch, FirstSeq: w.seq})
			if err != nil || !res.Duplicate {
				t.Fatalf("k=%d: retry of present store %s: %+v, %v", k, w.payload, res, err)
			}
		}
	}
	// Timestamps keep increasing with the wall clock an hour back.
	res, err := db.Store(context.Background(), "late", []*storagev1.Message{msg("late", "late")}, nil)
	if err != nil {
		t.Fatalf("k=%d: store after crash: %v", k, err)
	}
	if res.TimestampsUs[0] <= maxTs[res.Shard] {
		t.Fatalf("k=%d: timestamp %d after crash is not above %d", k, res.TimestampsUs[0], maxTs[res.Shard])
	}
	return false
}

// readAllEventually makes every message readable (ticks two epochs later)
// and reads them all.
func readAllEventually(t *testing.T, db *DB) []*storagev1.Message {
	t.Helper()
	for i := 0; i < db.NShards(); i++ {
		tickForTest(t, db, i)
	}
	return readAllCommitted(t, db)
}

// readAllCommitted reads every stream of every generation, ignoring the
// epoch rule of the current generation by adding a generation first (a
// non-current generation is read without a cutoff).
func readAllCommitted(t *testing.T, db *DB) []*storagev1.Message {
	t.Helper()
	for i := 0; i < db.NShards(); i++ {
		if _, err := db.AddGeneration(i); err != nil {
			t.Fatal(err)
		}
	}
	return readAll(t, db, "#", 0)
}
