package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/mqttrec"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestUnsubscribeCompletesInflight: a QoS 1 message sent for a subscription
// and not yet acknowledged when the client unsubscribes is still delivered
// to completion [MQTT-3.10.4-3]: after the connection ends, the resumed
// session sends it again with DUP, on another gateway too; a message
// published after the UNSUBACK is not sent [MQTT-3.10.4-2]. Once it is
// acknowledged, nothing of the subscription comes again.
func TestUnsubscribeCompletesInflight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)

	pub := mqttrec.NewSession(mqttrec.SessionOptions{})
	pc, _, err := mqttrec.Connect(ctx, c.addr(0), pub, mqttrec.Options{ClientID: "ui-pub", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	publish := func(i int) {
		t.Helper()
		if rc, err := pc.Publish(ctx, &packet.Publish{Topic: "ui/t", QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil || rc != packet.Success {
			t.Fatalf("publish %d: %v, %v", i, rc, err)
		}
	}

	sess := mqttrec.NewSession(mqttrec.SessionOptions{})
	opts := mqttrec.Options{ClientID: "ui-sub", CleanStart: true, SessionExpiry: 3600, WithholdPuback: 1 << 20}
	sc, _, err := mqttrec.Connect(ctx, c.addr(0), sess, opts)
	if err != nil {
		t.Fatal(err)
	}
	if codes, err := sc.Subscribe(ctx, 0, packet.Subscription{Filter: "ui/#", QoS: 1}); err != nil || codes[0] != 1 {
		t.Fatalf("SUBACK %v, %v", codes, err)
	}
	publish(0)
	publish(1)
	received := func() int { d, _ := sess.Counts(); return d }
	wait.For(t, 10*time.Second, "both messages, unacknowledged", func() bool { return received() == 2 })
	if codes, err := sc.Unsubscribe(ctx, "ui/#"); err != nil || codes[0] != packet.Success {
		t.Fatalf("UNSUBACK %v, %v", codes, err)
	}
	publish(2) // after the UNSUBACK: not for this session
	_ = sc.Close()

	// The session resumes on the other gateway, acknowledging this time.
	opts.CleanStart, opts.WithholdPuback = false, 0
	sc, ack, err := mqttrec.Connect(ctx, c.addr(1), sess, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	wait.For(t, 10*time.Second, "the two unacknowledged messages again", func() bool { return received() == 4 })
	if err := sc.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := sess.Messages()
	if len(msgs) != 4 {
		t.Fatalf("got %d PUBLISHes, want 4 (2, then the same 2 again): %+v", len(msgs), msgs)
	}
	for i, m := range msgs[2:] {
		if string(m.Payload) != fmt.Sprint(i) || !m.Dup || m.QoS != 1 || m.Conn != 2 {
			t.Fatalf("resend %d: %+v, want payload %d with DUP at QoS 1 on the second connection", i, m, i)
		}
	}
	for _, v := range sess.Violations() {
		t.Error(v)
	}

	// Acknowledged now: once the connection's final commit is in, the
	// session holds no subscription, and a third connection gets nothing
	// of the old one.
	_ = sc.Disconnect(&packet.Disconnect{})
	if got := waitSessionEnded(t, ctx, c.dsd.GRPCAddr, "ui-sub"); len(got.GetSubscriptions()) != 0 {
		t.Fatalf("after the final commit: subscriptions %v, want none (the retired one deleted)", got.GetSubscriptions())
	}
	sc, _, err = mqttrec.Connect(ctx, c.addr(0), sess, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	// A marker on another topic, subscribed now and published by the same
	// publisher after message 3: once it arrives, a copy of 3 through the
	// old subscription would have come first (the publisher's messages are
	// committed in order, and pushed in commit order).
	if codes, err := sc.Subscribe(ctx, 0, packet.Subscription{Filter: "ui-mark", QoS: 1}); err != nil || codes[0] != 1 {
		t.Fatalf("SUBACK %v, %v", codes, err)
	}
	publish(3)
	if rc, err := pc.Publish(ctx, &packet.Publish{Topic: "ui-mark", QoS: 1, Payload: []byte("marker")}); err != nil || rc != packet.Success {
		t.Fatalf("publish the marker: %v, %v", rc, err)
	}
	wait.For(t, 10*time.Second, "the marker", func() bool { return received() >= 5 })
	if msgs := sess.Messages(); len(msgs) != 5 || msgs[4].Topic != "ui-mark" {
		t.Fatalf("after the acknowledgements: %+v, want the 4 earlier PUBLISHes and then only the marker", msgs)
	}
}
