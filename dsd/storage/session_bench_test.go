package storage

import (
	"context"
	"fmt"
	"testing"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// BenchmarkCommitSession measures one subscriber's lazy record commit as
// fan-out sends it: the rings of 8 streams with 4 batch records each,
// and the seqno tracks. copy=true is CommitSession (the caller keeps the
// commit), copy=false CommitSessionNoCopy (the gRPC service's path). The
// engine is on vfs.NewMem, so the figures are the apply's CPU and
// allocations, not the fsync.
func BenchmarkCommitSession(b *testing.B) {
	for _, cp := range []bool{true, false} {
		b.Run(fmt.Sprintf("streams=8/records=4/copy=%t", cp), func(b *testing.B) {
			e := newSessEnv(b, 4)
			ctx := context.Background()
			o := e.openSess("bench", "u", false, 3600, "gw")
			if err := e.db.CommitSession(ctx, subCommit("bench", o.Guard, 1, 2, "bench/#")); err != nil {
				b.Fatal(err)
			}
			it := encodeIterator(&storagev1.Iterator{Shard: 1, Generation: 1, StaticIndex: []byte("01234567"),
				TopicFilter: "bench/#", StartTimeUs: 1, LastSeenKey: []byte("0123456789abcdef0123")})
			commit := func(i int) *storagev1.SessionCommit {
				c := &storagev1.SessionCommit{ClientId: "bench", Guard: o.Guard,
					Seqnos: &storagev1.SeqnoTracks{NextQos1: uint64(i*40 + 41)}}
				for s := range 8 {
					r := &storagev1.StreamRing{Key: &storagev1.StreamKey{SubscriptionId: 1, Shard: uint32(s % 4), Generation: 1,
						StaticIndex: []byte{byte(s)}}, Position: it}
					for k := range 4 {
						r.Batches = append(r.Batches, &storagev1.BatchRecord{ItBegin: it, ItEnd: it, Count: 10,
							FirstSeqnoQos1: uint64(i*40 + k*10 + 1), LastSeqnoQos1: uint64(i*40 + k*10 + 10), SubState: 2})
					}
					c.PutStreams = append(c.PutStreams, r)
				}
				return c
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c := commit(i)
				var err error
				if cp {
					err = e.db.CommitSession(ctx, c)
				} else {
					err = e.db.CommitSessionNoCopy(ctx, c)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
