package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestOverlappingSubscriptions: a session whose subscriptions overlap gets
// one copy of a message they all match, at the highest QoS they grant,
// carrying every matching Subscription Identifier (MQTT 5 section 3.3.4),
// live and after a reconnect to another gateway for what was published
// while it was away; after an UNSUBSCRIBE of the older one, the other
// delivers alone; an MQTT 3.1.1 session gets one copy too.
func TestOverlappingSubscriptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	pub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "overlap-pub", cleanStart: true})
	defer pub.disconnect()
	publish := func(topic string, qos byte, payload string) {
		t.Helper()
		if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	merged := func(gw int) float64 {
		return metricValue(testutil.Metrics(t, c.gateways[gw].Addrs["http"]), "strata_gateway_messages_merged_total")
	}

	sub := dialRaw(t, c.addr(0), packet.V5)
	if ack := sub.connectDurable(t, "overlap-sub", 3600); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	sub.subscribeWithID(t, 1, "ov/+", 1)
	sub.subscribeWithID(t, 2, "ov/b", 2)

	publish("ov/b", 2, "both")
	publish("ov/c", 2, "one")
	got := sub.receiveAcking(t, 2)
	want := []overlapDelivery{{"ov/b", 2, "both", []uint32{1, 2}}, {"ov/c", 1, "one", []uint32{1}}}
	sortDeliveries(got)
	if !slices.EqualFunc(got, want, overlapDelivery.equal) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// The younger subscription skipped its copy; a later message is the
	// next thing the client gets, so no second copy came in between.
	wait.For(t, 10*time.Second, "ov/b's copy skipped", func() bool { return merged(0) >= 1 })
	publish("ov/c", 1, "marker")
	if next := sub.receiveAcking(t, 1); next[0].payload != "marker" {
		t.Fatalf("after the merged message: %v, want the marker", next)
	}

	// Away: a message both match; back on the other gateway it comes once.
	sub.send(t, &packet.Disconnect{})
	waitSessionEnded(t, ctx, c.dsd.GRPCAddr, "overlap-sub")
	publish("ov/b", 1, "away")
	sub = dialRaw(t, c.addr(1), packet.V5)
	if ack := sub.connectDurable(t, "overlap-sub", 3600); ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatalf("CONNACK %+v, want session present", ack)
	}
	if got := sub.receiveAcking(t, 1); !got[0].equal(overlapDelivery{"ov/b", 1, "away", []uint32{1, 2}}) {
		t.Fatalf("after the reconnect: %v, want the away message once for both subscriptions", got)
	}
	wait.For(t, 10*time.Second, "ov/b's copy skipped on the other gateway", func() bool { return merged(1) >= 1 })
	publish("ov/c", 1, "marker2")
	if next := sub.receiveAcking(t, 1); next[0].payload != "marker2" {
		t.Fatalf("after the replayed message: %v, want the marker", next)
	}

	// The older subscription goes: ov/b's own subscription delivers from
	// then on, with its identifier alone.
	sub.send(t, &packet.Unsubscribe{PacketID: 200, Filters: []string{"ov/+"}})
	for {
		p := sub.recv(t)
		if ack, ok := p.(*packet.Unsuback); ok {
			if ack.PacketID != 200 || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 0 {
				t.Fatalf("UNSUBACK %+v", ack)
			}
			break
		}
		if pr, ok := p.(*packet.Pubrel); ok {
			sub.send(t, &packet.Pubcomp{PacketID: pr.PacketID})
			continue
		}
		t.Fatalf("waiting for UNSUBACK: %T %+v", p, p)
	}
	publish("ov/b", 2, "after")
	if got := sub.receiveAcking(t, 1); !got[0].equal(overlapDelivery{"ov/b", 2, "after", []uint32{2}}) {
		t.Fatalf("after UNSUBSCRIBE ov/+: %v, want ov/b's own delivery", got)
	}

	// MQTT 3.1.1: one copy at the highest granted QoS.
	v3 := dialRaw(t, c.addr(0), packet.V311)
	v3.connect(t, "overlap-v3", 30)
	v3.subscribeWithID(t, 0, "v3/#", 0)
	v3.subscribeWithID(t, 0, "v3/x", 1)
	before := merged(0)
	publish("v3/x", 1, "v3-both")
	if got := v3.receiveAcking(t, 1); !got[0].equal(overlapDelivery{"v3/x", 1, "v3-both", nil}) {
		t.Fatalf("3.1.1: %v, want one copy at QoS 1", got)
	}
	wait.For(t, 10*time.Second, "v3/x's copy skipped", func() bool { return merged(0) >= before+1 })
	publish("v3/y", 1, "v3-marker")
	if next := v3.receiveAcking(t, 1); next[0].payload != "v3-marker" {
		t.Fatalf("3.1.1 after the merged message: %v, want the marker", next)
	}
}

type overlapDelivery struct {
	topic   string
	qos     byte
	payload string
	subIDs  []uint32
}

func (d overlapDelivery) equal(o overlapDelivery) bool {
	return d.topic == o.topic && d.qos == o.qos && d.payload == o.payload && slices.Equal(d.subIDs, o.subIDs)
}

func (d overlapDelivery) String() string {
	return fmt.Sprintf("%s q%d %q subids=%v", d.topic, d.qos, d.payload, d.subIDs)
}

func sortDeliveries(ds []overlapDelivery) {
	slices.SortFunc(ds, func(a, b overlapDelivery) int {
		if a.topic < b.topic {
			return -1
		}
		if a.topic > b.topic {
			return 1
		}
		return 0
	})
	for _, d := range ds {
		slices.Sort(d.subIDs)
	}
}

// subscribeWithID subscribes to one filter (MQTT 5: with Subscription
// Identifier id when not 0) and checks the SUBACK grants qos.
func (c *rawClient) subscribeWithID(t *testing.T, id uint32, filter string, qos byte) {
	t.Helper()
	p := &packet.Subscribe{PacketID: uint16(100 + id + uint32(qos)), Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}}
	if id != 0 {
		p.Properties.SubscriptionIdentifiers = []uint32{id}
	}
	c.send(t, p)
	ack, ok := c.recv(t).(*packet.Suback)
	if !ok || len(ack.ReasonCodes) != 1 || byte(ack.ReasonCodes[0]) != qos {
		t.Fatalf("SUBACK for %s: %+v", filter, ack)
	}
}

// receiveAcking reads n PUBLISHes, completing each QoS 1 and 2 flow, and
// returns them in arrival order.
func (c *rawClient) receiveAcking(t *testing.T, n int) []overlapDelivery {
	t.Helper()
	var out []overlapDelivery
	for len(out) < n {
		switch p := c.recv(t).(type) {
		case *packet.Publish:
			out = append(out, overlapDelivery{p.Topic, p.QoS, string(p.Payload), p.Properties.SubscriptionIdentifiers})
			switch p.QoS {
			case 1:
				c.send(t, &packet.Puback{PacketID: p.PacketID})
			case 2:
				c.send(t, &packet.Pubrec{PacketID: p.PacketID})
			}
		case *packet.Pubrel:
			c.send(t, &packet.Pubcomp{PacketID: p.PacketID})
		default:
			t.Fatalf("unexpected %T %+v", p, p)
		}
	}
	return out
}
