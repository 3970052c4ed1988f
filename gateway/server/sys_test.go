package server

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/internal/buildinfo"
	"github.com/stratamq/strata/internal/testutil/topicalias"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// sysMessage is one $SYS message a client received.
type sysMessage struct {
	topic, payload string
	retain         bool
	// aliased: it came with an alias and no topic name.
	aliased bool
}

// sysClient is a paho.golang MQTT 5 client that takes outbound Topic
// Aliases and records what it receives.
type sysClient struct {
	c       *paho.Client
	mu      sync.Mutex
	got     []sysMessage
	aliases *topicalias.Table
	t       *testing.T
}

func dialSys(t *testing.T, s *Server, id string, aliasMax uint16) *sysClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	sc := &sysClient{aliases: topicalias.New(aliasMax), t: t}
	sc.c = paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			sc.mu.Lock()
			defer sc.mu.Unlock()
			var alias *uint16
			if p.Properties != nil {
				alias = p.Properties.TopicAlias
			}
			topic, aliasOnly, err := sc.aliases.Resolve(p.Topic, alias)
			if err != nil {
				t.Error(err)
			}
			sc.got = append(sc.got, sysMessage{topic: topic, payload: string(p.Payload), retain: p.Retain, aliased: aliasOnly})
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := sc.c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{TopicAliasMaximum: paho.Uint16(aliasMax)}})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect: %+v, %v", ack, err)
	}
	t.Cleanup(func() {
		_ = sc.c.Disconnect(&paho.Disconnect{})
		<-sc.c.Done()
	})
	return sc
}

func (sc *sysClient) subscribe(filters ...string) []byte {
	sc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub := &paho.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	sa, err := sc.c.Subscribe(ctx, sub)
	if err != nil && sa == nil {
		sc.t.Fatalf("subscribe %v: %v", filters, err)
	}
	return sa.Reasons
}

func (sc *sysClient) messages() []sysMessage {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return append([]sysMessage(nil), sc.got...)
}

// latest returns the last live (not retained) value of each topic.
func (sc *sysClient) latest() map[string]string {
	out := map[string]string{}
	for _, m := range sc.messages() {
		if !m.retain {
			out[m.topic] = m.payload
		}
	}
	return out
}

// sysTopicNames are the topics a gateway named gw-test publishes.
var sysTopicNames = []string{
	"$SYS/brokers/gw-test/version", "$SYS/brokers/gw-test/uptime", "$SYS/brokers/gw-test/datetime",
	"$SYS/brokers/gw-test/stats/connections/count", "$SYS/brokers/gw-test/stats/subscriptions/count",
	"$SYS/brokers/gw-test/metrics/messages/received", "$SYS/brokers/gw-test/metrics/messages/sent",
	"$SYS/brokers/gw-test/metrics/messages/dropped", "$SYS/brokers/gw-test/metrics/packets/received",
	"$SYS/brokers/gw-test/metrics/packets/sent", "$SYS/brokers/gw-test/metrics/bytes/received",
	"$SYS/brokers/gw-test/metrics/bytes/sent",
	"$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected", "$SYS/broker/subscriptions/count",
	"$SYS/broker/messages/received", "$SYS/broker/messages/sent", "$SYS/broker/publish/messages/received",
	"$SYS/broker/publish/messages/sent", "$SYS/broker/publish/messages/dropped", "$SYS/broker/bytes/received",
	"$SYS/broker/bytes/sent",
}

func sysServer(t *testing.T, interval time.Duration, opts ...func(*Options)) *Server {
	return testServer(t, append([]func(*Options){func(o *Options) {
		o.Name = "gw-test"
		o.Config.Gateway.SysInterval = config.Duration(interval)
	}}, opts...)...)
}

// TestSysTopics: a paho.golang client that subscribes to $SYS/# gets the
// latest value of every topic with RETAIN at once, then every
// sys_interval the live values, which count it; it may not publish there.
// Its Topic Alias Maximum makes the gateway alias the long $SYS topics,
// and paho's decoder takes them.
func TestSysTopics(t *testing.T) {
	s := sysServer(t, 50*time.Millisecond)
	sc := dialSys(t, s, "sys-1", 32)
	if codes := sc.subscribe("$SYS/#"); len(codes) != 1 || codes[0] != 1 {
		t.Fatalf("SUBACK %v, want [1]", codes)
	}
	wait.For(t, 10*time.Second, "a live value of every $SYS topic that counts the client", func() bool {
		l := sc.latest()
		for _, topic := range sysTopicNames {
			if _, ok := l[topic]; !ok {
				return false
			}
		}
		return l["$SYS/broker/clients/connected"] == "1" && l["$SYS/brokers/gw-test/stats/subscriptions/count"] == "1"
	})
	got := sc.messages()
	// First the retained values (taken at the gateway's start or at the
	// last interval), in the gateway's order.
	for i, topic := range sysTopicNames {
		if got[i].topic != topic || !got[i].retain {
			t.Fatalf("message %d: %+v, want %s with RETAIN", i, got[i], topic)
		}
	}
	l := sc.latest()
	if v := buildinfo.Get().Version; l["$SYS/brokers/gw-test/version"] != v || l["$SYS/broker/version"] != "strata gateway "+v {
		t.Errorf("version %q / %q, want %s", l["$SYS/brokers/gw-test/version"], l["$SYS/broker/version"], v)
	}
	if !strings.HasSuffix(l["$SYS/broker/uptime"], " seconds") {
		t.Errorf("$SYS/broker/uptime %q, want \"N seconds\"", l["$SYS/broker/uptime"])
	}
	if _, err := time.Parse(time.RFC3339, l["$SYS/brokers/gw-test/datetime"]); err != nil {
		t.Errorf("datetime: %v", err)
	}
	for _, topic := range []string{"$SYS/broker/bytes/received", "$SYS/broker/bytes/sent", "$SYS/broker/messages/received",
		"$SYS/broker/messages/sent", "$SYS/broker/publish/messages/sent"} {
		if n, err := strconv.Atoi(l[topic]); err != nil || n <= 0 {
			t.Errorf("%s = %q, want a positive count", topic, l[topic])
		}
	}
	aliased := 0
	for _, m := range got {
		if m.aliased {
			aliased++
		}
	}
	if aliased == 0 {
		t.Error("no PUBLISH came with an alias alone")
	}

	// Publishing to $SYS is refused (PUBACK 0x87), QoS 0 dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := sc.c.Publish(ctx, &paho.Publish{Topic: "$SYS/broker/uptime", QoS: 1, Payload: []byte("forged")})
	if err == nil || pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("PUBLISH to $SYS: %+v, %v; want PUBACK 0x87", pr, err)
	}
}

// TestSysTopicsACL: $SYS topics pass the ACL like any other: "#" does not
// cover them, a filter the rules do not allow is refused (0x87), and an
// allowed one gets only its topics.
func TestSysTopicsACL(t *testing.T) {
	acl, err := auth.NewACL(config.ACL{Rules: []config.ACLRule{
		{Permission: "allow", Action: "subscribe", Topics: []string{"$SYS/broker/#"}},
		{Permission: "allow", Action: "all", Topics: []string{"#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := sysServer(t, 50*time.Millisecond, func(o *Options) { o.ACL = acl })
	sc := dialSys(t, s, "sys-acl", 0)
	if codes := sc.subscribe("$SYS/#", "$SYS/brokers/gw-test/uptime", "$SYS/broker/+"); len(codes) != 3 ||
		codes[0] != 0x87 || codes[1] != 0x87 || codes[2] != 1 {
		t.Fatalf("SUBACK %v, want [0x87 0x87 1]", codes)
	}
	wait.For(t, 10*time.Second, "two live $SYS/broker/uptime values", func() bool {
		n := 0
		for _, m := range sc.messages() {
			if m.topic == "$SYS/broker/uptime" && !m.retain {
				n++
			}
		}
		return n >= 2
	})
	for _, m := range sc.messages() {
		if !strings.HasPrefix(m.topic, "$SYS/broker/") || strings.Count(m.topic, "/") != 2 {
			t.Fatalf("got %s, which only $SYS/broker/+ should bring", m.topic)
		}
	}
}

// TestSysTopicsOff: with gateway.sys_interval 0 a $SYS subscription is
// granted and gets nothing.
func TestSysTopicsOff(t *testing.T) {
	s := sysServer(t, 0)
	if s.sys != nil {
		t.Fatal("sys_interval 0 started the $SYS publisher")
	}
	sc := dialSys(t, s, "sys-off", 0)
	if codes := sc.subscribe("$SYS/#"); codes[0] != 1 {
		t.Fatalf("SUBACK %v", codes)
	}
	// A stored PUBLISH's PUBACK comes after anything the SUBSCRIBE sent.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := sc.c.Publish(ctx, &paho.Publish{Topic: "x/y", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if got := sc.messages(); len(got) != 0 {
		t.Fatalf("got %v with $SYS off", got)
	}
}
