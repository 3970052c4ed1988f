package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// TestNextStoredValues: with Limit.StoredValues, Next returns the same
// messages, keys and iterators as without, each as its stored encoding
// (which decodes to the message) and none decoded, for both layouts, from
// the tail cache and from Pebble, in the current generation and in an
// ended one, with wide and narrow filters (a narrow one skips the other
// topics of the stream).
func TestNextStoredValues(t *testing.T) {
	for _, layout := range []string{LayoutWildcardOptimized, LayoutWildcardOptimizedV2} {
		for _, tail := range []int{0, -1} {
			t.Run(fmt.Sprintf("layout=%s/tail=%d", layout, tail), func(t *testing.T) {
				opts := Options{DataDir: "data", FS: vfs.NewMem(), NShards: 1, IdleTickInterval: time.Hour, TailCacheBytes: tail,
					Layout: LayoutConfig{Type: layout, BitsPerTopicLevel: 8, TopicIndexBytes: 4, EpochBits: 64,
						WildcardThresholds: []int{4, 0}, MaxTrieStates: 1000}}
				db := must(Open(opts))
				defer db.Close()
				ctx := context.Background()
				store := func(from, n int) {
					var msgs []*storagev1.Message
					for i := from; i < from+n; i++ {
						mp := &storagev1.MessageProperties{ContentType: "t", UserProperties: []*storagev1.UserProperty{{Key: "k", Value: fmt.Sprint(i)}}}
						msgs = append(msgs, &storagev1.Message{Topic: fmt.Sprintf("dev/d%02d/t", i%12), Qos: uint32(i % 3), Payload: fmt.Appendf(nil, "p%d", i), Properties: mp})
					}
					must(db.Store(ctx, "c", msgs, nil))
				}
				store(0, 150)
				check := func(gen uint64) {
					t.Helper()
					for _, f := range []string{"dev/+/t", "dev/d03/t", "#"} {
						for _, s := range must(db.GetStreams(f, 0, -1)) {
							if s.Generation != gen {
								continue
							}
							a := must(db.MakeIterator(s, f, 0))
							b := a
							n := 0
							for {
								da, na, ea, err := db.Next(ctx, a, Limit{Max: 7})
								if err != nil {
									t.Fatal(err)
								}
								sb, nb, eb, err := db.Next(ctx, b, Limit{Max: 7, StoredValues: true})
								if err != nil {
									t.Fatal(err)
								}
								if len(da) != len(sb) || ea != eb || string(na) != string(nb) {
									t.Fatalf("%s: decoded %d (eos %v), stored %d (eos %v), iterators equal %v", f, len(da), ea, len(sb), eb, string(na) == string(nb))
								}
								for i := range da {
									m := &storagev1.Message{}
									if sb[i].Message != nil || proto.Unmarshal(sb[i].Value, m) != nil || !proto.Equal(m, da[i].Message) || string(sb[i].Key) != string(da[i].Key) {
										t.Fatalf("%s: message %d: stored %x (decoded %v), want %v", f, n+i, sb[i].Value, sb[i].Message, da[i].Message)
									}
								}
								n += len(da)
								a, b = na, nb
								if len(da) == 0 {
									break
								}
							}
							if n == 0 {
								t.Fatalf("%s: nothing read in generation %d", f, gen)
							}
						}
					}
				}
				check(1)
				must(db.AddGeneration(0))
				check(1) // ended: read to its end
				store(150, 50)
				check(2)
			})
		}
	}
}

// BenchmarkNextStoredValues: a replay of one topic's 20,000 queued
// messages in batches of 100 (the gateway link's), decoded or as stored,
// from the tail cache and from Pebble. ns/msg and allocs per message are
// dsd's read cost of a replayed message, before the batch is encoded.
func BenchmarkNextStoredValues(b *testing.B) {
	for _, src := range []struct {
		name  string
		bytes int
	}{{"tail", 0}, {"pebble", -1}} {
		for _, stored := range []bool{false, true} {
			b.Run(fmt.Sprintf("source=%s/stored=%v", src.name, stored), func(b *testing.B) {
				db := must(Open(Options{DataDir: "data", FS: vfs.NewMem(), NShards: 1, IdleTickInterval: time.Hour, TailCacheBytes: src.bytes, UnsafeNoSync: true}))
				defer db.Close()
				ctx := context.Background()
				const n = 20000
				for i := 0; i < n; i += 100 {
					msgs := make([]*storagev1.Message, 100)
					for j := range msgs {
						msgs[j] = &storagev1.Message{Topic: "bench/replay", Qos: 1, Payload: make([]byte, 64), PublisherClientId: "pub-1"}
					}
					must(db.Store(ctx, "c", msgs, nil))
				}
				s := must(db.GetStreams("bench/replay", 0, -1))[0]
				start := must(db.MakeIterator(s, "bench/replay", 0))
				read := 0
				b.ReportAllocs()
				b.ResetTimer()
				for read < b.N {
					it := start
					for read < b.N {
						es, next, _, err := db.Next(ctx, it, Limit{Max: 100, MaxBytes: 4 << 20, StoredValues: stored})
						if err != nil {
							b.Fatal(err)
						}
						if len(es) == 0 {
							break
						}
						read += len(es)
						it = next
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(read), "ns/msg")
			})
		}
	}
}
