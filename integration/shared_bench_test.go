package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// BenchmarkSharedGroupDrain: a durable shared group with a queue of
// sharedQueue QoS 1 messages on 8 topics drains it with 1 or 4 members,
// each spending sharedWork on every message (a consumer's processing: the
// shape a shared subscription exists for). msgs/s is the group's drain
// rate; 4 members should drain at about 4 times one member's.
//
//	go test ./integration -run '^$' -bench BenchmarkSharedGroupDrain -benchtime 1x
func BenchmarkSharedGroupDrain(b *testing.B) {
	for _, members := range []int{1, 4} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			for range b.N {
				b.ReportMetric(sharedDrain(b, members), "msgs/s")
			}
		})
	}
}

const (
	sharedQueue = 4000
	sharedWork  = 500 * time.Microsecond
)

func sharedDrain(b *testing.B, members int) float64 {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startCluster(b, ctx, 1)
	filter := "$share/bench/drain/#"
	for i := range members {
		m := dialSub(b, ctx, c.addr(0), pahoOpts{clientID: fmt.Sprint("m", i), cleanStart: true, expiry: 600})
		m.subscribe(b, ctx, filter, 1)
		m.disconnect()
	}
	publishAll(b, ctx, []string{c.addr(0)}, 4, sharedQueue/4, 8, "drain/t%d", 1)
	b.StartTimer()
	start := time.Now()
	var subs []*pahoSub
	for i := range members {
		subs = append(subs, dialSub(b, ctx, c.addr(0), pahoOpts{clientID: fmt.Sprint("m", i), expiry: 600, slow: sharedWork}))
	}
	wait.For(b, 4*time.Minute, "the queue drained", func() bool {
		n := 0
		for _, s := range subs {
			n += s.count()
		}
		return n >= sharedQueue
	})
	took := time.Since(start)
	b.StopTimer()
	for i, s := range subs {
		b.Logf("member %d: %d messages", i, s.count())
		s.disconnect()
	}
	return sharedQueue / took.Seconds()
}
