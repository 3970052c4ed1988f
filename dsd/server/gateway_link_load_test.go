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

// TestLinkPushLatency measures publish → push for a single-topic stream:
// one message at a time, the clock starts before Store and stops when the
// batch is received. It asserts only a loose bound; the numbers are logged.
func TestLinkPushLatency(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	e := startLinkServer(t, GatewayLinkOptions{})
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
		t.Fatal(err)
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, n)
	store := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := e.c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "lat", Messages: []*storagev1.Message{{Topic: "lat/t", Payload: []byte{byte(i)}}}}); err != nil {
			t.Fatal(err)
		}
		store = append(store, time.Since(start))
		var s stamped
		select {
		case s = <-got:
		case <-time.After(eventTimeout):
			t.Fatalf("message %d not pushed", i)
		}
		lat = append(lat, s.at.Sub(start))
		b := s.r.GetBatch()
		if b.GetEntryId() != id || len(b.GetMessages()) != 1 || b.GetMessages()[0].GetMessage().GetPayload()[0] != byte(i) {
			t.Fatalf("message %d: batch %v", i, b)
		}
		if err := l.Ack(id, b.GetBatchSeq()); err != nil {
			t.Fatal(err)
		}
	}
	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[int(q*float64(len(s)-1))]
	}
	t.Logf("publish → push over %d messages: p50 %v p99 %v max %v (Store round trip: p50 %v p99 %v)",
		n, p(lat, 0.5), p(lat, 0.99), p(lat, 1), p(store, 0.5), p(store, 0.99))
	if p(lat, 0.5) > time.Second {
		t.Fatalf("p50 publish → push %v: pushes are not driven by commits", p(lat, 0.5))
	}
}

// TestLinkLargeMessages pushes n × 1 MiB messages of one publisher and topic
// through Store and a Read entry, checks that all arrive complete and in
// order, and logs the throughput. The reader runs while the publisher
// stores.
func TestLinkLargeMessages(t *testing.T) {
	n := 1000
	if testing.Short() || raceEnabled {
		// 1 GiB through Pebble and the race detector on 2 cores takes
		// minutes; -short and -race run 100 MiB.
		n = 100
	}
	const size = 1 << 20
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	e.store("big", "big/t", []byte("warm-up"))
	id, err := l.AddRead(e.iteratorFor("big/t", e.watermark(e.db.ShardOf("big"))), 16)
	if err != nil {
		t.Fatal(err)
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

	start := time.Now()
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
	next, batches := 0, 0
	for next < n {
		b := ev.batch(t)
		if b.GetEntryId() != id {
			t.Fatalf("batch of entry %d", b.GetEntryId())
		}
		batches++
		for _, m := range b.GetMessages() {
			p := m.GetMessage().GetPayload()
			if len(p) != size {
				t.Fatalf("message %d: %d bytes", next, len(p))
			}
			if got := int(binary.BigEndian.Uint64(p)); got != next {
				t.Fatalf("message %d arrived at position %d", got, next)
			}
			if crc32.ChecksumIEEE(p) != sums[next] {
				t.Fatalf("message %d damaged", next)
			}
			next++
		}
		if err := l.Ack(id, b.GetBatchSeq()); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d × 1 MiB stored and pushed in %v: %.1f MiB/s, %d batches", n, elapsed, float64(n)/elapsed.Seconds(), batches)
}
