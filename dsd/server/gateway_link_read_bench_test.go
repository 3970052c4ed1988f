package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/storage"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// BenchmarkLinkReadBatch is dsd's side of a replay step of the gateway
// link: Next of 100 messages of one topic from the tail cache (each read
// once), the
// ReadBatch made of them, and its encoding for gRPC; with the messages
// decoded and encoded again (a gateway whose hello did not ask for stored
// values) and passed as stored. ns/msg and allocs per message.
func BenchmarkLinkReadBatch(b *testing.B) {
	for _, stored := range []bool{false, true} {
		b.Run(fmt.Sprintf("stored=%v", stored), func(b *testing.B) {
			db, err := storage.Open(storage.Options{DataDir: "data", FS: vfs.NewMem(), NShards: 1, UnsafeNoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			// Each round reads 20,000 messages stored for it, once each, as
			// a replay does (the tail cache decodes a message on its first
			// read only).
			queue := func() []byte {
				b.StopTimer()
				defer b.StartTimer()
				topic := fmt.Sprintf("bench/replay/%d", b.N)
				for i := 0; i < 20000; i += 100 {
					msgs := make([]*storagev1.Message, 100)
					for j := range msgs {
						msgs[j] = &storagev1.Message{Topic: topic, Qos: 1, Payload: make([]byte, 64), PublisherClientId: "pub-1"}
					}
					if _, err := db.Store(ctx, "c", msgs, nil); err != nil {
						b.Fatal(err)
					}
				}
				streams, err := db.GetStreams(topic, 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				it, err := db.MakeIterator(streams[len(streams)-1], topic, 0)
				if err != nil {
					b.Fatal(err)
				}
				return it
			}
			read, seq := 0, uint64(0)
			b.ReportAllocs()
			b.ResetTimer()
			for read < b.N {
				it := queue()
				for read < b.N {
					es, next, eos, err := db.Next(ctx, it, storage.Limit{Max: 100, MaxBytes: DefaultLinkMaxBatchBytes, StoredValues: stored})
					if err != nil {
						b.Fatal(err)
					}
					if len(es) == 0 {
						break
					}
					seq++
					if _, err := proto.Marshal(readBatch(1, seq, es, next, eos)); err != nil {
						b.Fatal(err)
					}
					read += len(es)
					it = next
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(read), "ns/msg")
		})
	}
}
