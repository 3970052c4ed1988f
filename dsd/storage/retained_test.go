package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/retainedorder"
	"github.com/stratamq/strata/lts"
)

func retainedMsg(topic, payload string) *storagev1.Message {
	m := msg(topic, payload)
	m.Retain = true
	return m
}

func getRetained(t testing.TB, db *DB, topic string) *storagev1.Message {
	t.Helper()
	m, ok, err := db.GetRetained(topic)
	if err != nil {
		t.Fatalf("get retained %q: %v", topic, err)
	}
	if !ok {
		return nil
	}
	return m
}

func payloadOf(m *storagev1.Message) string {
	if m == nil {
		return "<none>"
	}
	return string(m.Payload)
}

// matchAll reads every page of MatchRetained.
func matchAll(t testing.TB, db *DB, filter string, limit int) []*storagev1.Message {
	t.Helper()
	var out []*storagev1.Message
	token := ""
	for pages := 0; ; pages++ {
		msgs, next, err := db.MatchRetained(context.Background(), filter, token, limit)
		if err != nil {
			t.Fatalf("match retained %q: %v", filter, err)
		}
		if len(msgs) > limit {
			t.Fatalf("page of %d > limit %d", len(msgs), limit)
		}
		out = append(out, msgs...)
		if next == "" {
			return out
		}
		if next <= token {
			t.Fatalf("page token went from %q to %q", token, next)
		}
		token = next
		if pages > 1_000_000 {
			t.Fatal("too many pages")
		}
	}
}

func TestRetainedPutReplaceDelete(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		db := e.db
		m := retainedMsg("a/b", "v1")
		exp := uint32(3600)
		m.Properties = &storagev1.MessageProperties{ContentType: "text/plain", MessageExpiryInterval: &exp,
			UserProperties: []*storagev1.UserProperty{{Key: "k", Value: "v"}}}
		res, err := db.Store(ctx, "c1", []*storagev1.Message{m, msg("a/b", "not retained")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := getRetained(t, db, "a/b")
		want := storedMessage(m, "c1", res.TimestampsUs[0])
		if !proto.Equal(got, want) {
			t.Fatalf("retained = %v, want %v", got, want)
		}
		// Replace, by another publisher.
		if _, err := db.Store(ctx, "c2", []*storagev1.Message{retainedMsg("a/b", "v2")}, nil); err != nil {
			t.Fatal(err)
		}
		if p := payloadOf(getRetained(t, db, "a/b")); p != "v2" {
			t.Fatalf("after replace: %s", p)
		}
		// Two retained messages of one topic in one Store: the last wins.
		if _, err := db.Store(ctx, "c3", []*storagev1.Message{retainedMsg("a/b", "v3"), retainedMsg("x", "x"), retainedMsg("a/b", "v4")}, nil); err != nil {
			t.Fatal(err)
		}
		if p := payloadOf(getRetained(t, db, "a/b")); p != "v4" {
			t.Fatalf("after two in one store: %s", p)
		}
		// An empty payload deletes [MQTT-3.3.1-6].
		if _, err := db.Store(ctx, "c1", []*storagev1.Message{retainedMsg("a/b", "")}, nil); err != nil {
			t.Fatal(err)
		}
		if m := getRetained(t, db, "a/b"); m != nil {
			t.Fatalf("after empty payload: %v", m)
		}
		if got := matchAll(t, db, "#", 10); len(got) != 1 || got[0].Topic != "x" {
			t.Fatalf("match # = %v", got)
		}
		// Set again, then the operator's delete.
		if _, err := db.Store(ctx, "c1", []*storagev1.Message{retainedMsg("a/b", "v5")}, nil); err != nil {
			t.Fatal(err)
		}
		if deleted, err := db.DeleteRetained(ctx, "a/b"); err != nil || !deleted {
			t.Fatalf("delete: %v %v", deleted, err)
		}
		if deleted, err := db.DeleteRetained(ctx, "a/b"); err != nil || deleted {
			t.Fatalf("second delete: %v %v", deleted, err)
		}
		if m := getRetained(t, db, "a/b"); m != nil {
			t.Fatalf("after operator delete: %v", m)
		}
		e.reopen()
		if p := payloadOf(getRetained(t, e.db, "x")); p != "x" {
			t.Fatalf("after reopen: %s", p)
		}
		if m := getRetained(t, e.db, "a/b"); m != nil {
			t.Fatalf("after reopen: %v", m)
		}
		// Bad arguments.
		if _, _, err := e.db.GetRetained("a/+"); !errors.Is(err, ErrInvalidTopic) {
			t.Fatalf("get a/+: %v", err)
		}
		if _, _, err := e.db.MatchRetained(ctx, "a/#/b", "", 10); !errors.Is(err, ErrInvalidFilter) {
			t.Fatalf("match a/#/b: %v", err)
		}
		if _, _, err := e.db.MatchRetained(ctx, "#", "", 0); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("match limit 0: %v", err)
		}
	})
}

// sweepRetained runs every shard's tick, which turns the expired retained
// messages into tombstones, and waits for the commits.
func (db *DB) sweepRetained() error {
	for _, s := range db.shards {
		if _, err := s.do(context.Background(), &request{kind: reqTick}); err != nil {
			return err
		}
	}
	return nil
}

// rawRetained reads every shard's retained records: topic -> whether it
// holds a message, per shard.
func rawRetained(t testing.TB, db *DB) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for i := range db.shards {
		p := retainedPrefix(i)
		err := db.scan(p, func(k, v []byte) error {
			var r storagev1.RetainedRecord
			if err := decodeValue(k, v, &r); err != nil {
				return err
			}
			out[fmt.Sprintf("%d:%s", i, k[len(p):])] = r.Message != nil
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestRetainedExpiry(t *testing.T) {
	clock := newFakeClock(t0)
	e := &env{t: t, opts: Options{DataDir: "data", FS: vfs.NewMem(), NShards: 2, IdleTickInterval: time.Hour, Now: clock.Now}}
	e.open()
	defer e.close()
	ctx := context.Background()
	short, long := uint32(10), uint32(1000)
	m1 := retainedMsg("e/short", "s")
	m1.Properties = &storagev1.MessageProperties{MessageExpiryInterval: &short}
	m2 := retainedMsg("e/long", "l")
	m2.Properties = &storagev1.MessageProperties{MessageExpiryInterval: &long}
	if _, err := e.db.Store(ctx, "c", []*storagev1.Message{m1, m2, retainedMsg("e/never", "n"), retainedMsg("e/gone", "")}, nil); err != nil {
		t.Fatal(err)
	}
	if got := matchAll(t, e.db, "e/#", 2); len(got) != 3 {
		t.Fatalf("before expiry: %d messages", len(got))
	}
	clock.Advance(11 * time.Second)
	if m := getRetained(t, e.db, "e/short"); m != nil {
		t.Fatalf("expired message returned: %v", m)
	}
	if got := matchAll(t, e.db, "e/+", 1); len(got) != 2 {
		t.Fatalf("after expiry: %d messages", len(got))
	}
	if err := e.db.sweepRetained(); err != nil {
		t.Fatal(err)
	}
	sh := e.db.ShardOf("c")
	key := func(topic string) string { return fmt.Sprintf("%d:%s", sh, topic) }
	if got, want := rawRetained(t, e.db), map[string]bool{key("e/short"): false, key("e/long"): true, key("e/never"): true, key("e/gone"): false}; !mapsEqual(got, want) {
		t.Fatalf("after sweep: %v, want %v", got, want)
	}
	// The tombstones stay: they hide older records of other shards.
	clock.Advance(48 * time.Hour)
	if err := e.db.sweepRetained(); err != nil {
		t.Fatal(err)
	}
	if got, want := rawRetained(t, e.db), map[string]bool{key("e/short"): false, key("e/long"): false, key("e/never"): true, key("e/gone"): false}; !mapsEqual(got, want) {
		t.Fatalf("after two days: %v, want %v", got, want)
	}
	// A newer message of the topic replaces its tombstone.
	if _, err := e.db.Store(ctx, "c", []*storagev1.Message{retainedMsg("e/short", "again")}, nil); err != nil {
		t.Fatal(err)
	}
	if p := payloadOf(getRetained(t, e.db, "e/short")); p != "again" {
		t.Fatalf("set again: %s", p)
	}
	// The expiry survives a restart.
	e.reopen()
	if m := getRetained(t, e.db, "e/long"); m != nil {
		t.Fatalf("expired after reopen: %v", m)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestRetainedDuplicateStore(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		db := e.db
		p := &Producer{ClientID: "pub", Epoch: 1, FirstSeq: 1}
		m := retainedMsg("d/t", "first")
		store := []*storagev1.Message{msg("d/other", "x"), m}
		res, err := db.Store(ctx, "pub", store, p)
		if err != nil {
			t.Fatal(err)
		}
		// A plain retry: a duplicate, the retained value stays.
		dup, err := db.Store(ctx, "pub", store, p)
		if err != nil || !dup.Duplicate {
			t.Fatalf("retry: %+v %v", dup, err)
		}
		if got, want := getRetained(t, db, "d/t"), storedMessage(m, "pub", res.TimestampsUs[1]); !proto.Equal(got, want) {
			t.Fatalf("after retry: %v, want %v", got, want)
		}
		// A newer value of another publisher is not replaced by a retry.
		if _, err := db.Store(ctx, "other", []*storagev1.Message{retainedMsg("d/t", "newer")}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Store(ctx, "pub", store, p); err != nil {
			t.Fatal(err)
		}
		if p := payloadOf(getRetained(t, db, "d/t")); p != "newer" {
			t.Fatalf("retry replaced a newer value: %s", p)
		}
		// The publisher's own later deletion is not undone by a retry of
		// an earlier Store, across a reopen too.
		p2 := &Producer{ClientID: "pub", Epoch: 1, FirstSeq: 3}
		if _, err := db.Store(ctx, "pub", []*storagev1.Message{retainedMsg("d/t", "")}, p2); err != nil {
			t.Fatal(err)
		}
		e.reopen()
		db = e.db
		if _, err := db.Store(ctx, "pub", store, p); err != nil {
			t.Fatal(err)
		}
		if got := getRetained(t, db, "d/t"); got != nil {
			t.Fatalf("retry resurrected a deleted value: %v", got)
		}
	})
}

func TestRetainedRacingPublishers(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		const publishers, each = 8, 25
		type sent struct {
			order   *storagev1.RetainedRecord
			payload string
		}
		var (
			mu   sync.Mutex
			all  []sent
			wg   sync.WaitGroup
			errs = make(chan error, publishers)
		)
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := fmt.Sprintf("racer-%d", p)
				for i := 0; i < each; i++ {
					payload := fmt.Sprintf("%s/%d", client, i)
					if i%7 == 6 {
						payload = "" // a deletion now and then
					}
					res, err := e.db.Store(context.Background(), client, []*storagev1.Message{retainedMsg("race/t", payload)}, nil)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					all = append(all, sent{&storagev1.RetainedRecord{TimestampUs: res.TimestampsUs[0], Shard: uint32(res.Shard), PublisherClientId: client}, payload})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		latest := slices.MaxFunc(all, func(a, b sent) int {
			switch {
			case retainedorder.Less(a.order, b.order):
				return -1
			case retainedorder.Less(b.order, a.order):
				return 1
			}
			return 0
		})
		got := getRetained(t, e.db, "race/t")
		if latest.payload == "" {
			if got != nil {
				t.Fatalf("latest was a deletion; retained = %v", got)
			}
			return
		}
		if payloadOf(got) != latest.payload || got.TimestampUs != latest.order.TimestampUs {
			t.Fatalf("retained = %s@%d, latest = %s@%d", payloadOf(got), got.GetTimestampUs(), latest.payload, latest.order.TimestampUs)
		}
	}, allVariants[1], allVariants[3])
}

// randomLevel draws a topic level: short names, empty levels, '$' names.
func randomLevel(rng *rand.Rand, first bool) string {
	names := []string{"a", "b", "c", "", "ab", "a b"}
	if first && rng.IntN(5) == 0 {
		return []string{"$SYS", "$x", "$"}[rng.IntN(3)]
	}
	return names[rng.IntN(len(names))]
}

func randomTopic(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = randomLevel(rng, i == 0)
	}
	if tp := strings.Join(levels, "/"); tp != "" {
		return tp
	}
	return "/" // two empty levels; "" is not a topic name
}

func randomFilter(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		switch r := rng.IntN(10); {
		case r < 3:
			levels[i] = "+"
		case r < 4 && i == n-1:
			levels[i] = "#"
		default:
			levels[i] = randomLevel(rng, i == 0)
		}
	}
	if f := strings.Join(levels, "/"); f != "" {
		return f
	}
	return "+"
}

// naiveMatch is the reference: every live topic, matched one by one.
func naiveMatch(topics map[string]string, filter string) []string {
	var out []string
	for tp, payload := range topics {
		if payload != "" && lts.MatchTopic(filter, tp) {
			out = append(out, tp)
		}
	}
	slices.Sort(out)
	return out
}

func TestMatchRetainedModel(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		rng := rand.New(rand.NewPCG(7, uint64(e.opts.NShards)))
		model := map[string]string{}
		for i := 0; i < 400; i++ {
			tp := randomTopic(rng)
			payload := fmt.Sprintf("p%d", i)
			if rng.IntN(6) == 0 {
				payload = ""
			}
			client := fmt.Sprintf("c%d", rng.IntN(5))
			if _, err := e.db.Store(context.Background(), client, []*storagev1.Message{retainedMsg(tp, payload)}, nil); err != nil {
				t.Fatal(err)
			}
			model[tp] = payload
		}
		filters := []string{"#", "+", "$SYS/#", "+/#", "a/#", "a/+", "/#", "+/+", "$x", "$/+", "a b/#"}
		for i := 0; i < 300; i++ {
			filters = append(filters, randomFilter(rng))
		}
		for i, f := range filters {
			if err := lts.ValidateTopicFilter(f, lts.DefaultMaxTopicLevels); err != nil {
				t.Fatalf("bad test filter %q: %v", f, err)
			}
			limit := 1 + i%4
			got := matchAll(t, e.db, f, limit)
			var gotTopics []string
			for _, m := range got {
				gotTopics = append(gotTopics, m.Topic)
				if model[m.Topic] != string(m.Payload) {
					t.Fatalf("%q: topic %q has payload %q, model %q", f, m.Topic, m.Payload, model[m.Topic])
				}
			}
			if want := naiveMatch(model, f); !slices.Equal(gotTopics, want) {
				t.Fatalf("filter %q (limit %d):\n got %q\nwant %q", f, limit, gotTopics, want)
			}
		}
	}, allVariants[1])
}

func TestRetainedRange(t *testing.T) {
	for f, want := range map[string][2]string{
		"#": {"", ""}, "+": {"", ""}, "+/a": {"", ""}, "a": {"a", "a\x00"}, "a/b": {"a/b", "a/b\x00"}, "a/#": {"a", "a0"},
		"a/+": {"a/", "a0"}, "a/+/c": {"a/", "a0"}, "/+": {"/", "0"}, "$SYS/#": {"$SYS", "$SYS0"}, "a//+": {"a//", "a/0"},
	} {
		lo, hi := retainedRange(lts.SplitTopic(f))
		if got := [2]string{lo, hi}; got != want {
			t.Errorf("retainedRange(%q) = %q, want %q", f, got, want)
		}
	}
}

// TestRetainedCrash: acked retained Stores are present after a crash that
// keeps only synced data.
func TestRetainedCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	o := Options{DataDir: "data", FS: mem, NShards: 2, IdleTickInterval: time.Hour}
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[string]string{}
	for i := 0; i < 40; i++ {
		client := fmt.Sprintf("c%d", i%4)
		tp := fmt.Sprintf("crash/%d", i%10)
		p := &Producer{ClientID: client, Epoch: 1, FirstSeq: uint64(i/4 + 1)}
		if _, err := db.Store(ctx, client, []*storagev1.Message{retainedMsg(tp, fmt.Sprintf("v%d", i))}, p); err != nil {
			t.Fatal(err)
		}
		want[tp] = fmt.Sprintf("v%d", i)
	}
	clone := mem.CrashClone(vfs.CrashCloneCfg{})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	o.FS = clone
	if db, err = Open(o); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for tp, payload := range want {
		if got := payloadOf(getRetained(t, db, tp)); got != payload {
			t.Fatalf("%s after crash: %s, want %s", tp, got, payload)
		}
	}
}

// BenchmarkMatchRetained: 100k retained topics; the filter matches 1% of
// them (1,000), under a literal prefix, and with a leading wildcard (a full
// scan).
func BenchmarkMatchRetained(b *testing.B) {
	db, err := Open(Options{DataDir: b.TempDir(), NShards: 4, IdleTickInterval: time.Hour, UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	const n = 100_000
	for i := 0; i < n; i += 500 {
		msgs := make([]*storagev1.Message, 500)
		for j := range msgs {
			k := i + j
			msgs[j] = retainedMsg(fmt.Sprintf("site%d/dev%d/temp", k%100, k/100), "20.5")
		}
		if _, err := db.Store(ctx, fmt.Sprintf("loader%d", i%8), msgs, nil); err != nil {
			b.Fatal(err)
		}
	}
	for _, f := range []string{"site7/#", "site7/+/temp", "+/dev7/#"} {
		b.Run("filter="+f, func(b *testing.B) {
			for b.Loop() {
				got := matchAll(b, db, f, 1000)
				if len(got) != 1000 && f != "+/dev7/#" {
					b.Fatalf("%d matches", len(got))
				}
			}
		})
	}
}

// TestRetainedMerge puts records of one topic into the shards in many
// combinations (as publishers of different shards leave them): a read
// always returns the record with the greatest order key, and none when that
// is a tombstone or expired.
func TestRetainedMerge(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		now := time.Now().UnixMicro()
		recs := []*storagev1.RetainedRecord{
			retainedRecordFor(&storagev1.Message{Payload: []byte("s0"), PublisherClientId: "x", TimestampUs: now}, 0),
			retainedRecordFor(&storagev1.Message{Payload: []byte("s1-same-ts"), PublisherClientId: "a", TimestampUs: now}, 1),
			retainedRecordFor(&storagev1.Message{Payload: []byte("s2-later"), PublisherClientId: "a", TimestampUs: now + 1}, 2),
			retainedRecordFor(&storagev1.Message{Payload: nil, PublisherClientId: "b", TimestampUs: now + 2}, 0),
			retainedRecordFor(&storagev1.Message{Payload: []byte("s3-last"), PublisherClientId: "b", TimestampUs: now + 2}, 3),
		}
		rng := rand.New(rand.NewPCG(3, 3))
		for round := 0; round < 40; round++ {
			topic := fmt.Sprintf("o/%d", round)
			// One record per shard at most, as a shard keeps one per topic.
			var best *storagev1.RetainedRecord
			for _, i := range rng.Perm(len(recs))[:1+rng.IntN(len(recs))] {
				r := proto.CloneOf(recs[i])
				if r.Message != nil {
					r.Message.Topic = topic
				}
				if int(r.Shard) >= e.opts.NShards {
					continue
				}
				k := retainedKey(int(r.Shard), topic)
				var cur storagev1.RetainedRecord
				if found, err := e.db.getValue(k, &cur); err != nil {
					t.Fatal(err)
				} else if found && retainedorder.Newer(&cur, r) != r {
					continue
				}
				if err := e.db.pdb.Set(k, encodeValue(r), pebble.Sync); err != nil {
					t.Fatal(err)
				}
			}
			for sh := 0; sh < e.opts.NShards; sh++ {
				var cur storagev1.RetainedRecord
				if found, err := e.db.getValue(retainedKey(sh, topic), &cur); err != nil {
					t.Fatal(err)
				} else if found {
					best = retainedorder.Newer(best, &cur)
				}
			}
			want := "<none>"
			if best != nil && best.Message != nil {
				want = string(best.Message.Payload)
			}
			if got := payloadOf(getRetained(t, e.db, topic)); got != want {
				t.Fatalf("%s: get %s, want %s", topic, got, want)
			}
			got := matchAll(t, e.db, topic, 10)
			if (len(got) == 1) != (want != "<none>") || (len(got) == 1 && string(got[0].Payload) != want) {
				t.Fatalf("%s: match %v, want %s", topic, got, want)
			}
		}
		// The records of the shards: tombstones and their order keys too.
		all := []int{}
		for i := range e.opts.NShards {
			all = append(all, i)
		}
		ents, _, err := e.db.MatchRetainedRecords(context.Background(), all, "o/#", "", 100)
		if err != nil || len(ents) == 0 {
			t.Fatalf("records: %d %v", len(ents), err)
		}
		for _, ent := range ents {
			m, ok, err := e.db.GetRetained(ent.Topic)
			if err != nil || ok != (ent.Record.Message != nil) || (ok && !proto.Equal(m, ent.Record.Message)) {
				t.Fatalf("%s: record %v, get %v %v %v", ent.Topic, ent.Record, m, ok, err)
			}
		}
	}, allVariants[0], allVariants[1])
}

// TestRetainedCrashEveryWrite crashes the engine at the k-th filesystem
// write of a retained workload, for every k until a run completes, keeping
// only synced data. After each crash: every topic holds the value of its
// last acked Store or of a later Store of the workload (never an older
// one), and once the unacked Stores are retried with the same sequence
// numbers every topic converges to the workload's last value.
func TestRetainedCrashEveryWrite(t *testing.T) {
	type step struct {
		client, topic, payload string
		seq                    uint64
	}
	var work []step
	seqs := map[string]uint64{}
	for i := 0; i < 16; i++ {
		c := fmt.Sprintf("p%d", i%3)
		seqs[c]++
		payload := fmt.Sprintf("v%d", i)
		if i%5 == 4 {
			payload = ""
		}
		work = append(work, step{client: c, topic: fmt.Sprintf("k/%d", i%4), payload: payload, seq: seqs[c]})
	}
	final := map[string]string{}
	index := map[string]map[string]int{} // topic -> payload -> index
	for i, w := range work {
		final[w.topic] = w.payload
		if index[w.topic] == nil {
			index[w.topic] = map[string]int{}
		}
		index[w.topic][w.payload] = i
	}
	store := func(db *DB, w step) error {
		_, err := db.Store(context.Background(), w.client, []*storagev1.Message{retainedMsg(w.topic, w.payload)}, &Producer{ClientID: w.client, Epoch: 1, FirstSeq: w.seq})
		return err
	}

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
	base := Options{DataDir: "data", NShards: 2, IdleTickInterval: time.Hour}
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
	rng := rand.New(rand.NewPCG(2, 2))
	pristine := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
	limit := 1000
	if torture() {
		limit = math.MaxInt
	}
	for k := 0; k < limit; k++ {
		mem = pristine.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
		crashFS.Store(nil)
		o := base
		o.FS = errorfs.Wrap(mem, inj)
		db, err := Open(o)
		if err != nil {
			t.Fatalf("k=%d: open: %v", k, err)
		}
		countdown.Store(int64(k))
		lastAcked := map[string]int{} // topic -> index of its last acked Store
		next := 0
		for ; next < len(work); next++ {
			err := store(db, work[next])
			if countdown.Load() < 0 {
				break
			}
			if err != nil {
				t.Fatalf("k=%d: store: %v", k, err)
			}
			lastAcked[work[next].topic] = next
		}
		if err := db.Close(); err != nil {
			t.Fatalf("k=%d: close: %v", k, err)
		}
		if countdown.Load() >= 0 {
			t.Logf("no crash at write %d: %d crash points checked", k, k)
			return
		}
		o = base
		o.FS = crashFS.Load()
		if db, err = Open(o); err != nil {
			t.Fatalf("k=%d: reopen: %v", k, err)
		}
		for topic, i := range lastAcked {
			got := getRetained(t, db, topic)
			j, ok := index[topic][string(got.GetPayload())]
			if !ok || j < i {
				t.Fatalf("k=%d: %s = %s after the crash; its last acked store is %d (%q)", k, topic, payloadOf(got), i, work[i].payload)
			}
		}
		for _, w := range work[next:] {
			if err := store(db, w); err != nil {
				t.Fatalf("k=%d: retry: %v", k, err)
			}
		}
		for topic, payload := range final {
			if got := getRetained(t, db, topic); string(got.GetPayload()) != payload {
				t.Fatalf("k=%d: %s = %s after the retries, want %q", k, topic, payloadOf(got), payload)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("stopped after %d crash points (set STRATA_TORTURE=1 for all)", limit)
}

// TestRetainedMigration opens a data dir with the retained keyspaces of an
// earlier version (the site-wide records, a pending retained will): Open
// moves them into the shards, a record never over a newer one, and the old
// keys are gone.
func TestRetainedMigration(t *testing.T) {
	clock := newFakeClock(t0)
	e := &env{t: t, opts: Options{DataDir: "data", FS: vfs.NewMem(), NShards: 4, IdleTickInterval: time.Hour, Now: clock.Now}}
	e.open()
	ctx := context.Background()
	// A newer record in the shard of "pub" than the legacy one below.
	res, err := e.db.Store(ctx, "pub", []*storagev1.Message{retainedMsg("m/newer", "shard")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pubShard := uint32(e.db.ShardOf("pub"))
	legacy := map[string]*storagev1.RetainedRecord{
		"m/a":     retainedRecordFor(&storagev1.Message{Topic: "m/a", Payload: []byte("a"), PublisherClientId: "pub", TimestampUs: res.TimestampsUs[0] - 5}, int(pubShard)),
		"m/gone":  {TimestampUs: res.TimestampsUs[0] - 4, Shard: 65535}, // an operator's delete
		"m/newer": retainedRecordFor(&storagev1.Message{Topic: "m/newer", Payload: []byte("legacy"), PublisherClientId: "pub", TimestampUs: res.TimestampsUs[0] - 3}, int(pubShard)),
	}
	for topic, rec := range legacy {
		k := append(shardPrefix(siteShard, tagLegacyRetained), topic...)
		if err := e.db.pdb.Set(k, encodeValue(rec), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	// A retained will an earlier version left pending in the shard of "w".
	will := &storagev1.Message{Topic: "m/will", Payload: []byte("w"), Retain: true, PublisherClientId: "w", TimestampUs: res.TimestampsUs[0] - 2}
	if err := e.db.pdb.Set(willRetainedKey(e.db.ShardOf("w"), will.TimestampUs), encodeValue(will), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	defer e.close()
	for topic, want := range map[string]string{"m/a": "a", "m/gone": "<none>", "m/newer": "shard", "m/will": "w"} {
		if got := payloadOf(getRetained(t, e.db, topic)); got != want {
			t.Errorf("%s = %s, want %s", topic, got, want)
		}
	}
	for _, p := range [][]byte{shardPrefix(siteShard, tagLegacyRetained), shardPrefix(e.db.ShardOf("w"), tagWillRetained)} {
		_ = e.db.scan(p, func(k, v []byte) error {
			t.Errorf("key %s left after the migration", prettyKey(k))
			return nil
		})
	}
	if got := matchAll(t, e.db, "m/#", 10); len(got) != 3 {
		t.Fatalf("match after migration: %v", got)
	}
}

// TestRetainedOperatorDelete: publishers of different shards set a topic;
// the operator's delete hides every record, and a later publish sets it
// again.
func TestRetainedOperatorDelete(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for i := range 6 {
			if _, err := e.db.Store(ctx, fmt.Sprintf("p%d", i), []*storagev1.Message{retainedMsg("op/t", fmt.Sprintf("v%d", i))}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if deleted, err := e.db.DeleteRetained(ctx, "op/t"); err != nil || !deleted {
			t.Fatalf("delete: %v %v", deleted, err)
		}
		if got := matchAll(t, e.db, "op/#", 10); len(got) != 0 {
			t.Fatalf("after delete: %v", got)
		}
		// A tombstone above a record from a clock far ahead.
		if err := e.db.DeleteRetainedAbove(ctx, "op/t", time.Now().Add(time.Hour).UnixMicro()); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("above an hour ahead: %v", err)
		}
		if _, err := e.db.Store(ctx, "p9", []*storagev1.Message{retainedMsg("op/t", "again")}, nil); err != nil {
			t.Fatal(err)
		}
		e.reopen()
		if p := payloadOf(getRetained(t, e.db, "op/t")); p != "again" {
			t.Fatalf("after a new publish: %s", p)
		}
	}, allVariants[1], allVariants[3])
}
