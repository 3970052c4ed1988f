package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/packet"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
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

// TestLiveDelivery: a message published right after SUBACK, and the first
// message of a topic dsd never saw, reach the subscriber, across gateways;
// subscription identifiers, QoS downgrade and retain handling are applied.
func TestLiveDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	pub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "live-pub", cleanStart: true})
	defer pub.disconnect()
	// A retained message before anyone subscribes.
	if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: "live/retained", QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
		t.Fatal(err)
	}

	sub := dialSub(t, ctx, c.addr(1), pahoOpts{clientID: "live-sub", cleanStart: true})
	defer sub.disconnect()
	id := 7
	sa, err := sub.c.Subscribe(ctx, &paho.Subscribe{
		Properties:    &paho.SubscribeProperties{SubscriptionIdentifier: &id},
		Subscriptions: []paho.SubscribeOptions{{Topic: "live/#", QoS: 1}},
	})
	if err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("SUBACK %+v, %v", sa, err)
	}
	// Right after SUBACK (the retained message comes first, flagged).
	topic := fmt.Sprintf("live/never-seen-%d/x", time.Now().UnixNano())
	if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 2, Payload: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	sub.waitCount(t, 2, 10*time.Second)
	got := sub.messages()
	if got[0].topic != "live/retained" || !got[0].retain || got[0].payload != "kept" {
		t.Fatalf("first delivery %+v, want the retained message with RETAIN", got[0])
	}
	if got[1].topic != topic || got[1].payload != "first" || got[1].retain || got[1].qos != 1 {
		t.Fatalf("second delivery %+v, want %s at QoS 1 (downgraded from 2)", got[1], topic)
	}
	for _, d := range got {
		if len(d.subIDs) != 1 || d.subIDs[0] != id {
			t.Fatalf("delivery %+v: subscription identifiers %v, want [%d]", d, d.subIDs, id)
		}
	}
}

// TestPacketIDReuse: one connection reuses packet id 1 for 10,000 QoS 1
// PUBLISHes (each after its PUBACK); every one is stored and delivered.
// Packet ids are not a dedup key.
func TestPacketIDReuse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 1)
	n := 10000
	if testing.Short() {
		n = 2000
	}
	sub := dialSub(t, ctx, c.addr(0), pahoOpts{clientID: "reuse-sub", cleanStart: true, recvMax: 1000})
	defer sub.disconnect()
	sub.subscribe(t, ctx, "reuse/+", 1)

	raw := dialRaw(t, c.addr(0), packet.V5)
	raw.connect(t, "reuse-pub", 30)
	start := time.Now()
	for i := range n {
		raw.send(t, &packet.Publish{Topic: "reuse/a", QoS: 1, PacketID: 1, Payload: []byte(fmt.Sprintf("pub-0/0/%d", i))})
		if ack, ok := raw.recv(t).(*packet.Puback); !ok || ack.PacketID != 1 || ack.ReasonCode != 0 {
			t.Fatalf("message %d: %+v, want PUBACK 1", i, ack)
		}
	}
	t.Logf("%d sequential QoS 1 publishes with packet id 1 in %v", n, time.Since(start))
	sub.waitCount(t, n, 30*time.Second)
	checkOrderAndCount(t, sub.messages(), 1, n, 1, false)
}

// TestMQTT311OfflineAndMosquitto: an MQTT 3.1.1 client with clean session
// false gets the messages published while it was away, and Debian's
// mosquitto_pub and mosquitto_sub interoperate through two gateways.
func TestMQTT311OfflineAndMosquitto(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (apt-get install mosquitto-clients): %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	host := func(i int) []string {
		h, p, _ := net.SplitHostPort(c.addr(i))
		return []string{"-h", h, "-p", p}
	}
	// 3.1.1 subscriber, clean session false, on gateway 0 (raw client).
	raw := dialRaw(t, c.addr(0), packet.V311)
	raw.send(t, &packet.Connect{Version: packet.V311, ClientID: "old-client", KeepAlive: 30})
	if ack, ok := raw.recv(t).(*packet.Connack); !ok || ack.ReasonCode != 0 || ack.SessionPresent {
		t.Fatalf("CONNACK %+v", ack)
	}
	raw.send(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "old/#", QoS: 1}}})
	if ack, ok := raw.recv(t).(*packet.Suback); !ok || ack.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK %+v", ack)
	}
	raw.send(t, &packet.Disconnect{})
	raw.waitClosed(t, 5*time.Second)

	// mosquitto_pub (3.1.1 and 5) publishes through gateway 1 while it is away.
	for i, args := range [][]string{{"-V", "mqttv311"}, {"-V", "mqttv5"}} {
		cmd := exec.CommandContext(ctx, "mosquitto_pub", append(append(args, host(1)...), "-q", "1", "-t", "old/m", "-m", fmt.Sprintf("offline-%d", i))...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
	}
	// mosquitto_sub, resuming the same 3.1.1 session (-c: clean session false) on gateway 1.
	cmd := exec.CommandContext(ctx, "mosquitto_sub", append(host(1), "-V", "mqttv311", "-i", "old-client", "-c", "-q", "1", "-t", "old/#", "-C", "2", "-W", "10", "-v")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out)
	}
	// Two publishers: order is kept per publisher, not across them.
	lines := strings.Fields(strings.ReplaceAll(string(out), "old/m ", ""))
	sort.Strings(lines)
	if strings.Join(lines, ",") != "offline-0,offline-1" {
		t.Fatalf("mosquitto_sub printed %q", out)
	}
}

// TestDurabilityDisabledZone: with durable_sessions.enable = false,
// sessions work but end with their connection: CONNACK tells an MQTT 5
// client its Session Expiry Interval is 0, messages are delivered live,
// and a reconnect finds no session.
func TestDurabilityDisabledZone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfgFile := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(cfgFile, []byte("[durable_sessions]\nenable = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterConfig(t, ctx, 1, cfgFile)
	d, g := c.dsd, c.gateways[0]
	addr := g.Addrs["tcp.default"]
	sub := dialSub(t, ctx, addr, pahoOpts{clientID: "ephemeral", expiry: 3600})
	if e := sub.ack.Properties.SessionExpiryInterval; e == nil || *e != 0 {
		t.Fatalf("CONNACK Session Expiry Interval %v, want 0", e)
	}
	sub.subscribe(t, ctx, "eph/+", 1)
	publishAll(t, ctx, []string{addr}, 1, 100, 2, "eph/%d", 1)
	sub.waitCount(t, 100, 10*time.Second)
	checkOrderAndCount(t, sub.messages(), 1, 100, 2, false)
	sub.disconnect()
	// The gateway ends the session once the connection is over.
	dc, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	wait.For(t, 10*time.Second, "the session to end with its connection", func() bool {
		_, err := dc.Sessions().GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: "ephemeral"})
		return status.Code(err) == codes.NotFound
	})
	sub = dialSub(t, ctx, addr, pahoOpts{clientID: "ephemeral", expiry: 3600})
	defer sub.disconnect()
	if sub.ack.SessionPresent {
		t.Fatal("session present = 1 with durability disabled")
	}
}
