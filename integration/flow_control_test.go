package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/mqttrec"
	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestReceiveMaximumFilled: a subscriber that does not acknowledge gets
// exactly min(its Receive Maximum, queued) QoS 1 PUBLISHes, whether the
// messages were queued while it was away or arrive one by one while it is
// connected (each its own Store, so dsd pushes one batch per message); its
// acknowledgements then release the rest, in order.
func TestReceiveMaximumFilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 1)
	const recvMax, queued = 10, 25

	pub := mqttrec.NewSession(mqttrec.SessionOptions{})
	pc, _, err := mqttrec.Connect(ctx, c.addr(0), pub, mqttrec.Options{ClientID: "rm-pub", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	publish := func(topic string, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if rc, err := pc.Publish(ctx, &packet.Publish{Topic: topic, QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil || rc != packet.Success {
				t.Fatalf("publish %d: %v, %v", i, rc, err)
			}
		}
	}

	for _, tc := range []struct {
		name    string
		offline bool
	}{{"queued while away", true}, {"live, one batch per message", false}} {
		t.Run(tc.name, func(t *testing.T) {
			id, topic := fmt.Sprintf("rm-sub-%v", tc.offline), fmt.Sprintf("rm/%v", tc.offline)
			sess := mqttrec.NewSession(mqttrec.SessionOptions{})
			opts := mqttrec.Options{ClientID: id, CleanStart: true, SessionExpiry: 3600, ReceiveMaximum: recvMax, WithholdPuback: 1 << 20}
			sc, _, err := mqttrec.Connect(ctx, c.addr(0), sess, opts)
			if err != nil {
				t.Fatal(err)
			}
			if codes, err := sc.Subscribe(ctx, 0, packet.Subscription{Filter: topic, QoS: 1}); err != nil || codes[0] != 1 {
				t.Fatalf("SUBACK %v, %v", codes, err)
			}
			if tc.offline {
				_ = sc.Disconnect(&packet.Disconnect{})
				publish(topic, 0, queued)
				opts.CleanStart = false
				if sc, _, err = mqttrec.Connect(ctx, c.addr(0), sess, opts); err != nil {
					t.Fatal(err)
				}
			} else {
				publish(topic, 0, queued)
			}
			defer sc.Close()
			received := func() int { d, _ := sess.Counts(); return d }
			wait.For(t, 10*time.Second, "Receive Maximum's worth of messages", func() bool { return received() >= recvMax })
			// Everything is stored and pushed; a round trip through the
			// gateway lets anything it would still send arrive first.
			wait.For(t, 10*time.Second, "the gateway to hold the rest", func() bool {
				return metricValue(testutil.Metrics(t, c.gateways[0].Addrs["http"]), "strata_gateway_inflight_messages") == recvMax
			})
			if err := sc.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if got := received(); got != recvMax {
				t.Fatalf("received %d PUBLISHes without acknowledging any, want exactly min(Receive Maximum %d, queued %d)", got, recvMax, queued)
			}
			for _, v := range sess.Violations() {
				t.Errorf("violation: %v", v)
			}
			// Acknowledge from now on: the rest follows, in order.
			if err := sc.SendWithheld(); err != nil {
				t.Fatal(err)
			}
			wait.For(t, 10*time.Second, "every queued message", func() bool { return received() >= queued })
			for i, m := range sess.Messages()[:queued] {
				if string(m.Payload) != fmt.Sprint(i) {
					t.Fatalf("message %d is %q, want %d (in order)", i, m.Payload, i)
				}
			}
		})
	}

	// A subscriber that leaves with Receive Maximum's worth unacknowledged:
	// once its connection ends, nothing is in flight on the gateway (the
	// messages wait in its session for the next connection).
	sess := mqttrec.NewSession(mqttrec.SessionOptions{})
	opts := mqttrec.Options{ClientID: "rm-leaver", CleanStart: true, SessionExpiry: 3600, ReceiveMaximum: recvMax, WithholdPuback: 1 << 20}
	sc, _, err := mqttrec.Connect(ctx, c.addr(0), sess, opts)
	if err != nil {
		t.Fatal(err)
	}
	if codes, err := sc.Subscribe(ctx, 0, packet.Subscription{Filter: "rm/leaver", QoS: 1}); err != nil || codes[0] != 1 {
		t.Fatalf("SUBACK %v, %v", codes, err)
	}
	publish("rm/leaver", 0, queued)
	wait.For(t, 10*time.Second, "Receive Maximum's worth of messages", func() bool { d, _ := sess.Counts(); return d >= recvMax })
	sc.Close()
	wait.For(t, 10*time.Second, "no message in flight once the subscriber left", func() bool {
		return metricValue(testutil.Metrics(t, c.gateways[0].Addrs["http"]), "strata_gateway_inflight_messages") == 0
	})
}
