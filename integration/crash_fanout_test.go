package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil"
)

// TestCrashDSDFanout kills dsd with SIGKILL during fan-out to 32 durable
// subscribers of one gateway (16 at QoS 1, 16 at QoS 2, each subscription
// reading the same streams with its own records in flight), while 2
// publishers per QoS keep 8 PUBLISHes in flight. Every subscriber receives
// every acknowledged message (lost = 0) in order per (publisher, topic); a
// QoS 1 repeat carries DUP; a QoS 2 message reaches each QoS 2 subscriber
// exactly once (the checker's rules).
func TestCrashDSDFanout(t *testing.T) {
	kills := 4
	if testutil.Torture() {
		kills = 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 1)
	addr := func() string { return c.addr(0) }
	loads := pipelinedLoads(t, ctx, addr, "fan", 16, 2, 8)
	for i := range kills {
		for _, l := range loads {
			l.waitAcked(t, 100, fmt.Sprintf("load before kill %d", i+1))
		}
		d, err := c.dsd.KillAndRestart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.dsd = d
	}
	for _, l := range loads {
		l.waitAcked(t, 100, "load after the last kill")
	}
	for i, l := range loads {
		rep := l.finish(t)
		if rep.Delivered < 16*rep.Acked {
			t.Fatalf("QoS %d: %d deliveries for %d acked messages and 16 subscribers", i+1, rep.Delivered, rep.Acked)
		}
		if bad := undupedRepeats(l.h.Events()); len(bad) > 0 {
			t.Fatalf("QoS 1 messages delivered again without DUP: %v", bad)
		}
		t.Logf("QoS %d, %d dsd kills, 16 subscribers: %s; subscriber reconnects %d", i+1, kills, rep, l.disconnects.Load())
	}
}
