package integration

import (
	"context"
	"testing"
	"time"
)

// TestDurableSessionAcrossGateways is the first scenario: a
// subscriber (clean start false, expiry 1 h) subscribes sensors/+/temp at
// QoS 1 on gateway A and disconnects; 5 publishers send 10,000 messages
// over 500 topics through both gateways; the subscriber reconnects to
// gateway B and gets all 10,000, in order per (publisher, topic), with
// session present = 1.
func TestDurableSessionAcrossGateways(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	const publishers, perPublisher, topics = 5, 2000, 500
	sub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "durable-sub", expiry: 3600})
	sub.subscribe(t, ctx, "sensors/+/temp", 1)
	sub.disconnect()

	start := time.Now()
	publishAll(t, ctx, []string{c.addr(0), c.addr(1)}, publishers, perPublisher, topics, "sensors/%d/temp", 1)
	t.Logf("published %d QoS 1 messages in %v", publishers*perPublisher, time.Since(start))

	start = time.Now()
	sub = dialSub(t, ctx, c.addr(1), pahoOpts{clientID: "durable-sub", expiry: 3600, recvMax: 1000})
	defer sub.disconnect()
	if !sub.ack.SessionPresent {
		t.Fatal("reconnect on the other gateway: session present = 0, want 1")
	}
	sub.waitCount(t, publishers*perPublisher, 60*time.Second)
	t.Logf("replayed %d offline messages on the other gateway in %v", sub.count(), time.Since(start))
	checkOrderAndCount(t, sub.messages(), publishers, perPublisher, topics, false)
}
