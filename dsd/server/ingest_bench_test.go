package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// BenchmarkIngestStream measures the ingest path through dsd's gRPC
// server as a gateway drives it: one stream, producers publishers with
// inflight one-message Stores each outstanding, each answered once
// fsynced. It reports msgs/s and the allocations of the whole path (client
// and server in this process).
func BenchmarkIngestStream(b *testing.B) {
	for _, producers := range []int{10, 100} {
		for _, inflight := range []int{1, 32} {
			b.Run(fmt.Sprintf("producers=%d/inflight=%d", producers, inflight), func(b *testing.B) {
				benchIngest(b, producers, inflight)
			})
		}
	}
}

func benchIngest(b *testing.B, producers, inflight int) {
	c, _ := startServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.Storage.Ingest(ctx)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 100)
	msgs := make([][]byte, producers)
	for p := range msgs {
		msgs[p], _ = proto.Marshal(&storagev1.Message{Topic: fmt.Sprintf("bench/%d/temp", p), Payload: payload, Qos: 1})
	}
	per := max(b.N/producers, inflight)
	total := per * producers
	seq := make([]uint64, producers)
	byID := map[uint64]int{} // store id → producer
	var id uint64
	// next sends the producer's next Store, if it has any left.
	next := func(p int, req *dsdv1.IngestRequest) *dsdv1.IngestRequest {
		if seq[p] == uint64(per) {
			return req
		}
		seq[p]++
		id++
		byID[id] = p
		return &dsdv1.IngestRequest{Stores: append(req.GetStores(), &dsdv1.IngestStore{Id: id, ClientId: fmt.Sprintf("bench-%d", p),
			Producer: &dsdv1.Producer{Epoch: 1, FirstSeq: seq[p]}, Messages: [][]byte{msgs[p]}})}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	req := &dsdv1.IngestRequest{}
	for p := range producers {
		for range inflight {
			req = next(p, req)
		}
	}
	if err := stream.Send(req); err != nil {
		b.Fatal(err)
	}
	responses := 0
	for done := 0; done < total; {
		resp, err := stream.Recv()
		responses++
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.GetFailed()) > 0 {
			b.Fatalf("failed: %v", resp.GetFailed()[0])
		}
		req := &dsdv1.IngestRequest{}
		for _, sid := range resp.GetStored() {
			done++
			req = next(byID[sid], req)
			delete(byID, sid)
		}
		if len(req.GetStores()) > 0 {
			if err := stream.Send(req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(total)/float64(responses), "stores/response")
	_ = stream.CloseSend()
}
