package integration

import (
	"context"
	"fmt"
	"github.com/stratamq/strata/internal/testutil"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/failpoint"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestGenerationsWhileOffline: three generations are added while a durable
// session is away; on its return it gets every message exactly once, in
// order per topic, generation after generation.
func TestGenerationsWhileOffline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 1)
	sub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "gen-sub", expiry: 3600})
	sub.subscribe(t, ctx, "gen/+", 1)
	sub.disconnect()

	const rounds, perRound, topics = 4, 300, 10
	pub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "pub-0", cleanStart: true})
	seq := 0
	for r := range rounds {
		if r > 0 {
			dstool(t, c.dsd.GRPCAddr, "generations", "add")
		}
		for range perRound {
			k := seq % topics
			if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("gen/%d", k), QoS: 1, Payload: []byte(fmt.Sprintf("pub-0/%d/%d", k, seq))}); err != nil {
				t.Fatal(err)
			}
			seq++
		}
	}
	pub.disconnect()

	sub = dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "gen-sub", expiry: 3600})
	defer sub.disconnect()
	if !sub.ack.SessionPresent {
		t.Fatal("session present = 0")
	}
	sub.waitCount(t, rounds*perRound, 30*time.Second)
	checkOrderAndCount(t, sub.messages(), 1, rounds*perRound, topics, false)
}

// TestTakeoverMidDelivery: while a subscriber on gateway A receives a
// stream of QoS 1 messages, the same client id connects to gateway B
// (clean start false); A's connection is closed, B resumes the session,
// and nothing is lost (redeliveries carry DUP).
func TestTakeoverMidDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	a := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "roamer", expiry: 3600, recvMax: 10})
	a.subscribe(t, ctx, "roam/+", 1)

	const n, topics = 3000, 5
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishAll(t, ctx, []string{c.addr(0), c.addr(1)}, 1, n, topics, "roam/%d", 1)
	}()
	wait.For(t, 20*time.Second, "the first deliveries on A", func() bool { return a.count() >= n/10 })
	b := dialSub(t, ctx, c.addr(1), pahoOpts{clientID: "roamer", expiry: 3600, recvMax: 10})
	defer b.disconnect()
	if !b.ack.SessionPresent {
		t.Fatal("takeover: session present = 0")
	}
	select {
	case <-a.c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("A's connection was not closed by the takeover")
	}
	<-done
	fromA := a.messages()
	if !wait.Until(30*time.Second, func() bool { return distinct(append(fromA, b.messages()...)) >= n }) {
		for i, g := range c.gateways {
			for _, line := range strings.Split(testutil.Metrics(t, g.Addrs["http"]), "\n") {
				if strings.HasPrefix(line, "strata_gateway_messages") || strings.HasPrefix(line, "strata_gateway_inflight") || strings.HasPrefix(line, "strata_gateway_connections ") || strings.HasPrefix(line, "strata_gateway_dsd_call_seconds_count") {
					t.Logf("gateway %d: %s", i, line)
				}
			}
		}
		t.Fatalf("A got %d, B got %d: %d distinct of %d", len(fromA), b.count(), distinct(append(fromA, b.messages()...)), n)
	}
	t.Logf("A got %d, B got %d (of %d)", len(fromA), b.count(), n)
	checkOrderAndCount(t, append(fromA, b.messages()...), 1, n, topics, true)
}

func distinct(ds []delivery) int {
	seen := map[string]bool{}
	for _, d := range ds {
		seen[d.payload] = true
	}
	return len(seen)
}

// TestWillAcrossGateways: a client on gateway A with a will stops
// answering (keep-alive 1 s); its will reaches a subscriber on gateway B.
func TestWillAcrossGateways(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	sub := dialSub(t, ctx, c.addr(1), pahoOpts{clientID: "will-watcher", cleanStart: true})
	defer sub.disconnect()
	sub.subscribe(t, ctx, "wills/#", 1)

	raw := dialRaw(t, c.addr(0), packet.V5)
	raw.send(t, &packet.Connect{Version: packet.V5, ClientID: "doomed", CleanStart: true, KeepAlive: 1,
		WillFlag: true, WillTopic: "wills/doomed", WillQoS: 1, WillPayload: []byte("gone")})
	if ack, ok := raw.recv(t).(*packet.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	// Silence: no PINGREQ. The gateway closes after 1.5 s and dsd fires the will.
	sub.waitCount(t, 1, 15*time.Second)
	if got := sub.messages()[0]; got.topic != "wills/doomed" || got.payload != "gone" {
		t.Fatalf("got %+v, want the will", got)
	}
}

// TestRetainHandling: retain handling 0 sends retained messages on every
// SUBSCRIBE, 1 only on a new subscription, 2 never; a retained message
// sent right before a gateway crash is sent again after the resume.
func TestRetainHandling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2, nil, []string{failpoint.EnvVar + "=gateway-after-retained-send"})
	pub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "ret-pub", cleanStart: true})
	for _, topic := range []string{"ret/a", "ret/b"} {
		if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("value of " + topic)}); err != nil {
			t.Fatal(err)
		}
	}
	pub.disconnect()

	retainedOn := func(s *pahoSub, rh byte, want int) {
		t.Helper()
		before := s.count()
		sa, err := s.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ret/+", QoS: 1, RetainHandling: rh}}})
		if err != nil || sa.Reasons[0] != 1 {
			t.Fatalf("SUBACK %+v, %v", sa, err)
		}
		if want > 0 {
			s.waitCount(t, before+want, 10*time.Second)
		}
		// A marker published after the SUBSCRIBE arrives after any retained
		// message of it: then the count is final.
		marker := fmt.Sprintf("marker-%d-%d", rh, before)
		mp := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "marker", cleanStart: true})
		if _, err := mp.c.Publish(ctx, &paho.Publish{Topic: "ret/marker", QoS: 1, Payload: []byte(marker)}); err != nil {
			t.Fatal(err)
		}
		mp.disconnect()
		s.waitCount(t, before+want+1, 10*time.Second)
		got := s.messages()[before:]
		retained := 0
		for _, d := range got {
			if d.retain {
				retained++
			}
		}
		if retained != want || got[len(got)-1].payload != marker {
			t.Fatalf("retain handling %d: %d retained messages %+v, want %d then the marker", rh, retained, got, want)
		}
	}
	s := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "ret-sub-2", cleanStart: true})
	retainedOn(s, 2, 0) // never
	s.disconnect()
	s = dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "ret-sub-1", cleanStart: true})
	retainedOn(s, 1, 2) // new subscription: sent
	retainedOn(s, 1, 0) // existing subscription: not sent
	retainedOn(s, 0, 2) // always
	s.disconnect()

	// Gateway 1 dies right after writing a retained message: the session
	// resumed on gateway 0 gets the retained messages again (DUP).
	nc, err := net.Dial("tcp", c.addr(1))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var first []delivery
	crashing := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			mu.Lock()
			first = append(first, delivery{topic: pr.Packet.Topic, retain: pr.Packet.Retain})
			mu.Unlock()
			return true, nil
		}}})
	expiry := uint32(3600)
	if _, err := crashing.Connect(ctx, &paho.Connect{ClientID: "ret-crash", CleanStart: true, KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = crashing.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ret/+", QoS: 1}}})
	}()
	select {
	case <-c.gateways[1].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("gateway 1 did not hit its failpoint")
	}
	resumed := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "ret-crash", expiry: 3600})
	defer resumed.disconnect()
	if !resumed.ack.SessionPresent {
		t.Fatal("session present = 0 after the crash")
	}
	resumed.waitCount(t, 2, 10*time.Second)
	mu.Lock()
	t.Logf("before the crash: %+v; after the resume: %+v", first, resumed.messages())
	mu.Unlock()
	for _, d := range resumed.messages() {
		if !d.retain || !d.dup {
			t.Fatalf("redelivered %+v: want RETAIN and DUP", d)
		}
	}
}

// TestDSDRestartDuringDelivery: dsd is killed (SIGKILL) and restarted on
// the same data while a durable subscriber is connected; the gateway's
// link comes back (same epoch if the lease held, or a new one), the
// subscriber stays or resumes, and every acknowledged message arrives.
func TestDSDRestartDuringDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 1)
	sub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "dsd-restart-sub", expiry: 3600})
	sub.subscribe(t, ctx, "restart/+", 1)
	const half, topics = 500, 5
	publishAll(t, ctx, []string{c.addr(0)}, 1, half, topics, "restart/%d", 1)
	sub.waitCount(t, half, 10*time.Second)

	d, err := c.dsd.KillAndRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.dsd = d
	// The publisher connects once the gateway is registered again.
	var pub *paho.Client
	wait.For(t, 15*time.Second, "the gateway to take CONNECTs again", func() bool {
		nc, err := net.Dial("tcp", c.addr(0))
		if err != nil {
			return false
		}
		p := paho.NewClient(paho.ClientConfig{Conn: nc})
		if ack, err := p.Connect(ctx, &paho.Connect{ClientID: "pub-1", CleanStart: true, KeepAlive: 30}); err != nil || ack.ReasonCode != 0 {
			nc.Close()
			return false
		}
		pub = p
		return true
	})
	for i := range half {
		k := i % topics
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("restart/%d", k), QoS: 1, Payload: []byte(fmt.Sprintf("pub-1/%d/%d", k, i))}); err != nil {
			t.Fatal(err)
		}
	}
	_ = pub.Disconnect(&paho.Disconnect{})
	all := func() []delivery { return sub.messages() }
	select {
	case <-sub.c.Done():
		// The lease was lost: the subscriber resumes its session.
		t.Log("the subscriber was disconnected; it resumes")
		sub = dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "dsd-restart-sub", expiry: 3600})
		defer sub.disconnect()
		prev := all()
		all = func() []delivery { return append(prev, sub.messages()...) }
	default:
		t.Log("the subscriber stayed connected across the dsd restart")
		defer sub.disconnect()
	}
	wait.For(t, 20*time.Second, "both halves", func() bool { return distinct(all()) >= 2*half })
	var first, second []delivery
	for _, d := range all() {
		if strings.HasPrefix(d.payload, "pub-0/") {
			first = append(first, d)
		} else {
			second = append(second, d)
		}
	}
	checkOrderAndCount(t, first, 1, half, topics, true)
	for i := range second {
		second[i].payload = "pub-0" + strings.TrimPrefix(second[i].payload, "pub-1")
	}
	checkOrderAndCount(t, second, 1, half, topics, true)
}
