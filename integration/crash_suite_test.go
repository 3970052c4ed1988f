package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/wait"
)

// TestCrashDSDUnderQoS1Load kills dsd with SIGKILL 10 times (50 with make
// torture) under QoS 1 load from 3 publishers to a durable subscriber, and
// restarts it on the same data: every acknowledged message is delivered
// (lost = 0), in order per (publisher, topic), and the subscriber finds
// its session on every reconnect.
func TestCrashDSDUnderQoS1Load(t *testing.T) {
	kills := 10
	if Torture() {
		kills = 50
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 1)
	addr := func() string { return c.addr(0) }
	run := newLoadRun()
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	run.subscriber(subCtx, "crash-sub", addr, "crash/+")
	for p := range 3 {
		run.publisher(pubCtx, fmt.Sprintf("pub-%d", p), addr, 1, "crash/%d", 8)
	}
	for i := range kills {
		before := run.acked.Load()
		wait.For(t, 30*time.Second, fmt.Sprintf("load before kill %d", i+1), func() bool { return run.acked.Load() >= before+100 })
		d, err := c.dsd.KillAndRestart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.dsd = d
	}
	before := run.acked.Load()
	wait.For(t, 30*time.Second, "load after the last kill", func() bool { return run.acked.Load() >= before+100 })
	stopPubs()
	run.pubs.Wait()
	rep := run.settle(t, 30*time.Second)
	stopSubs()
	run.subs.Wait()
	t.Logf("%d dsd kills: %s; subscriber reconnects %d", kills, rep, run.disconnects.Load())
}
