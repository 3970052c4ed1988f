package dsdbackend

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// echoIngest answers every request of an ingest stream at once, all its
// Stores stored, and counts the requests.
type echoIngest struct {
	dsdv1.UnimplementedStorageServiceServer
	requests atomic.Int64
}

func (e *echoIngest) Ingest(stream dsdv1.StorageService_IngestServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		e.requests.Add(1)
		resp := &dsdv1.IngestResponse{Stored: make([]uint64, len(req.GetStores()))}
		for i, st := range req.GetStores() {
			resp.Stored[i] = st.GetId()
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// BenchmarkIngestSubmit measures the gateway's ingest stream against a dsd
// that answers at once: producers connections each keep one one-message
// Store in flight, as publishers with one QoS 1 message in flight do.
// stores/request is how many Stores one request of the stream carried.
func BenchmarkIngestSubmit(b *testing.B) {
	for _, producers := range []int{10, 100} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			e := &echoIngest{}
			c, srv := serveFakeDSD(b, func(s *grpc.Server) { dsdv1.RegisterStorageServiceServer(s, e) })
			g := NewIngest(c.Storage, held, IngestOptions{Logger: slog.New(slog.DiscardHandler)})
			defer func() {
				_ = g.Close()
				_ = c.Close()
				srv.Stop()
			}()
			payload := make([]byte, 100)
			per := max(b.N/producers, 1)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for p := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					done := make(chan error, 1)
					req := session.StoreRequest{ClientID: fmt.Sprintf("c%d", p), Guard: 1,
						Messages: []session.Message{{Topic: fmt.Sprintf("bench/%d", p), Payload: payload, QoS: 1}}}
					for i := range per {
						req.FirstSeq = uint64(i + 1)
						g.Submit(req, func(err error) { done <- err })
						if err := <-done; err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(per*producers)/float64(e.requests.Load()), "stores/request")
		})
	}
}
