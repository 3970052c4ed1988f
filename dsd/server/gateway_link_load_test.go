package server

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"
	"time"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// pushOneByOne stores n messages of a single-topic stream one at a time and
// checks that each is pushed, on its own, to the Read entry before the next
// is stored: pushes are driven by commits, not by the safety-net rescan. It
// returns the publish → push time of each message (the clock starts before
// Store and stops when the batch is received).
func pushOneByOne(tb testing.TB, n int) []time.Duration {
	e := startLinkServer(tb, GatewayLinkOptions{})
	l := e.open()
	// Time-stamp each response as it is received, not when the test looks.
	type stamped struct {
		r  *dsdv1.GatewayLinkResponse
		at time.Time
	}
	got := make(chan stamped, 16)
	go func() {
		defer close(got)
		for {
			r, err := l.Recv()
			if err != nil {
				return
			}
			got <- stamped{r, time.Now()}
		}
	}()
	e.store("lat", "lat/t", []byte("warm-up"))
	shard := e.db.ShardOf("lat")
	id, err := l.AddRead(e.iteratorFor("lat/t", e.watermark(shard)), 1000)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := e.c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "lat", Messages: []*storagev1.Message{{Topic: "lat/t", Payload: []byte{byte(i)}}}}); err != nil {
			tb.Fatal(err)
		}
		var s stamped
		select {
		case s = <-got:
		case <-time.After(eventTimeout):
			tb.Fatalf("message %d not pushed", i)
		}
		lat = append(lat, s.at.Sub(start))
		b := s.r.GetBatch()
		if b.GetEntryId() != id || len(b.GetMessages()) != 1 || b.GetMessages()[0].GetMessage().GetPayload()[0] != byte(i) {
			tb.Fatalf("message %d: batch %v", i, b)
		}
		if err := l.Ack(id, b.GetBatchSeq()); err != nil {
			tb.Fatal(err)
		}
	}
	return lat
}

// TestLinkPushesEachCommit: a subscriber's Read entry gets every stored
// message of its stream pushed, in order, one batch per commit.
func TestLinkPushesEachCommit(t *testing.T) {
	pushOneByOne(t, 50)
}

// BenchmarkLinkPushLatency measures publish → push for a single-topic
// stream, one message at a time: p50 and p99 in µs.
func BenchmarkLinkPushLatency(b *testing.B) {
	lat := pushOneByOne(b, b.N)
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// pushLarge pushes n × 1 MiB messages of one publisher and topic through
// Store and a Read entry with a window of 16 messages, the reader running
// while the publisher stores, and checks that all arrive complete and in
// order.
func pushLarge(tb testing.TB, n int) {
	const size = 1 << 20
	e := startLinkServer(tb, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	e.store("big", "big/t", []byte("warm-up"))
	id, err := l.AddRead(e.iteratorFor("big/t", e.watermark(e.db.ShardOf("big"))), 16)
	if err != nil {
		tb.Fatal(err)
	}
	payload := func(i int) []byte {
		p := make([]byte, size)
		binary.BigEndian.PutUint64(p, uint64(i))
		for j := 8; j < size; j += 8 {
			binary.BigEndian.PutUint64(p[j:], uint64(i)*0x9E3779B97F4A7C15+uint64(j))
		}
		return p
	}
	sums := make([]uint32, n)
	for i := range n {
		sums[i] = crc32.ChecksumIEEE(payload(i))
	}
	if b, ok := tb.(*testing.B); ok {
		b.SetBytes(size)
		b.ResetTimer()
	}
	stored := make(chan error, 1)
	go func() {
		ctx := context.Background()
		for i := range n {
			if _, err := e.c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "big", Messages: []*storagev1.Message{{Topic: "big/t", Payload: payload(i)}}}); err != nil {
				stored <- err
				return
			}
		}
		stored <- nil
	}()
	for next := 0; next < n; {
		b := ev.batch(tb)
		if b.GetEntryId() != id {
			tb.Fatalf("batch of entry %d", b.GetEntryId())
		}
		for _, m := range b.GetMessages() {
			p := m.GetMessage().GetPayload()
			if len(p) != size {
				tb.Fatalf("message %d: %d bytes", next, len(p))
			}
			if got := int(binary.BigEndian.Uint64(p)); got != next {
				tb.Fatalf("message %d arrived at position %d", got, next)
			}
			if crc32.ChecksumIEEE(p) != sums[next] {
				tb.Fatalf("message %d damaged", next)
			}
			next++
		}
		if err := l.Ack(id, b.GetBatchSeq()); err != nil {
			tb.Fatal(err)
		}
	}
	if err := <-stored; err != nil {
		tb.Fatal(err)
	}
}

// TestLinkLargeMessages: 1 MiB messages (the largest a Store takes) arrive
// complete and in order. 40 MiB is more than two windows of the entry, so
// the reader must acknowledge for the pushes to go on.
func TestLinkLargeMessages(t *testing.T) {
	pushLarge(t, 40)
}

// BenchmarkLinkLargeMessages measures the throughput of 1 MiB messages
// stored and pushed (MB/s).
func BenchmarkLinkLargeMessages(b *testing.B) {
	pushLarge(b, b.N)
}
