package client

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// BenchmarkLinkBatchDecode is the gateway's side of a ReadBatch of 100
// messages: the gRPC decode of the response and, when dsd sent the messages
// as stored (StoredMessage.value), their decode in Recv. ns/msg and allocs
// per message.
func BenchmarkLinkBatchDecode(b *testing.B) {
	for _, stored := range []bool{false, true} {
		b.Run(fmt.Sprintf("stored=%v", stored), func(b *testing.B) {
			batch := &dsdv1.ReadBatch{EntryId: 1, BatchSeq: 1, Iterator: make([]byte, 40)}
			for i := range 100 {
				m := &storagev1.Message{Topic: "bench/replay", Qos: 1, Payload: make([]byte, 64), PublisherClientId: "pub-1", TimestampUs: int64(i)}
				sm := &dsdv1.StoredMessage{Key: make([]byte, 12)}
				if stored {
					sm.Value, _ = proto.MarshalOptions{Deterministic: true}.Marshal(m)
				} else {
					sm.Message = m
				}
				batch.Messages = append(batch.Messages, sm)
			}
			wire, err := proto.Marshal(&dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Batch{Batch: batch}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				var resp dsdv1.GatewayLinkResponse
				if err := proto.Unmarshal(wire, &resp); err != nil {
					b.Fatal(err)
				}
				if err := decodeStored(resp.GetBatch().GetMessages()); err != nil {
					b.Fatal(err)
				}
				if resp.GetBatch().GetMessages()[99].GetMessage().GetTopic() != "bench/replay" {
					b.Fatal("not decoded")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/msg")
		})
	}
}
