package integration

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// cluster is one dsd and the gateways in front of it.
type cluster struct {
	dsd        *DSD
	gateways   []*Gateway
	configFile string
}

// startCluster starts dsd and n gateways; everything is stopped (and
// logged, if the test failed) at the end of the test.
func startCluster(t testing.TB, ctx context.Context, n int, gwEnv ...[]string) *cluster {
	t.Helper()
	return startClusterConfig(t, ctx, n, "", gwEnv...)
}

// startClusterConfig is startCluster with a configuration file both
// programs read ("" for none).
func startClusterConfig(t testing.TB, ctx context.Context, n int, configFile string, gwEnv ...[]string) *cluster {
	t.Helper()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data"), ConfigFile: configFile})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dsd: d, configFile: configFile}
	t.Cleanup(func() {
		for i, g := range c.gateways {
			_ = g.Stop(10 * time.Second)
			if t.Failed() {
				t.Logf("gateway %d log:\n%s", i, tail(g.Log(), 60))
			}
		}
		_ = c.dsd.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("dsd log:\n%s", tail(c.dsd.Log(), 40))
		}
	})
	for i := range n {
		var env []string
		if i < len(gwEnv) {
			env = gwEnv[i]
		}
		c.addGateway(t, ctx, env)
	}
	return c
}

func (c *cluster) addGateway(t testing.TB, ctx context.Context, env []string) *Gateway {
	t.Helper()
	g, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: c.dsd.GRPCAddr, Env: env, ConfigFile: c.configFile})
	if err != nil {
		t.Fatal(err)
	}
	c.gateways = append(c.gateways, g)
	return g
}

func (c *cluster) addr(i int) string { return c.gateways[i].Addrs["tcp.default"] }

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// delivery is one message a subscriber received.
type delivery struct {
	topic   string
	payload string
	qos     byte
	dup     bool
	retain  bool
	subIDs  []int
}

// pahoSub is a paho.golang MQTT 5 client that records what it receives
// (paho acknowledges each message after the handler returns).
type pahoSub struct {
	c  *paho.Client
	mu sync.Mutex
	// got are the messages in arrival order.
	got []delivery
	ack *paho.Connack
}

type pahoOpts struct {
	clientID   string
	cleanStart bool
	expiry     uint32
	recvMax    uint16
	// slow makes the client take this long over each message before it
	// acknowledges it (a slow consumer, whose messages stay in flight).
	slow time.Duration
}

func dialSub(t testing.TB, ctx context.Context, addr string, o pahoOpts) *pahoSub {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &pahoSub{}
	s.c = paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			d := delivery{topic: p.Topic, payload: string(p.Payload), qos: p.QoS, dup: p.Duplicate(), retain: p.Retain}
			if p.Properties != nil && p.Properties.SubscriptionIdentifier != nil {
				d.subIDs = []int{*p.Properties.SubscriptionIdentifier}
			}
			s.mu.Lock()
			s.got = append(s.got, d)
			s.mu.Unlock()
			time.Sleep(o.slow) // models: a slow consumer (its messages stay in flight)
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: o.clientID, CleanStart: o.cleanStart, KeepAlive: 30, Properties: &paho.ConnectProperties{}}
	if o.expiry > 0 {
		e := o.expiry
		cp.Properties.SessionExpiryInterval = &e
	}
	if o.recvMax > 0 {
		r := o.recvMax
		cp.Properties.ReceiveMaximum = &r
	}
	ack, err := s.c.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("connect %s: %v", o.clientID, err)
	}
	if ack.ReasonCode != 0 {
		t.Fatalf("connect %s: CONNACK 0x%02X", o.clientID, ack.ReasonCode)
	}
	s.ack = ack
	return s
}

func (s *pahoSub) subscribe(t testing.TB, ctx context.Context, filter string, qos byte) {
	t.Helper()
	sa, err := s.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != qos {
		t.Fatalf("SUBSCRIBE %s: %+v, %v", filter, sa, err)
	}
}

func (s *pahoSub) messages() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.got...)
}

func (s *pahoSub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// waitCount waits until the subscriber holds at least n messages.
func (s *pahoSub) waitCount(t testing.TB, n int, within time.Duration) {
	t.Helper()
	wait.For(t, within, fmt.Sprintf("%d messages", n), func() bool { return s.count() >= n })
}

func (s *pahoSub) disconnect() {
	_ = s.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	<-s.c.Done()
}

// publishAll publishes count messages per publisher over topics
// fmt.Sprintf(topic, k) for k in [0, topics), at qos, through the given
// gateway addresses in turn; within a publisher, each topic's messages go
// in order (a goroutine per topic class). Payloads are "publisher/k/seq".
func publishAll(t testing.TB, ctx context.Context, addrs []string, publishers, count, topics int, topic string, qos byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, publishers*4)
	for p := range publishers {
		nc, err := net.Dial("tcp", addrs[p%len(addrs)])
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("pub-%d", p), CleanStart: true, KeepAlive: 30}); err != nil {
			t.Fatal(err)
		}
		const lanes = 4
		var pw sync.WaitGroup
		for lane := range lanes {
			pw.Add(1)
			go func() {
				defer pw.Done()
				for i := range count {
					k := i % topics
					if k%lanes != lane {
						continue
					}
					payload := fmt.Sprintf("pub-%d/%d/%d", p, k, i)
					if _, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf(topic, k), QoS: qos, Payload: []byte(payload)}); err != nil {
						errs <- fmt.Errorf("publisher %d: %w", p, err)
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw.Wait()
			_ = c.Disconnect(&paho.Disconnect{})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// checkOrderAndCount checks that every "publisher/k/seq" payload of
// publishers × count (k = seq mod topics) arrived, exactly once unless
// allowDup (a redelivery must then carry DUP), and in seq order per
// (publisher, topic).
func checkOrderAndCount(t *testing.T, got []delivery, publishers, count, topics int, allowDup bool) {
	t.Helper()
	seen := map[string]int{}
	last := map[string]int{}
	for _, d := range got {
		seen[d.payload]++
		if seen[d.payload] > 1 {
			if !allowDup || !d.dup && d.qos > 0 {
				t.Fatalf("duplicate %s (dup flag %t)", d.payload, d.dup)
			}
			continue
		}
		f := strings.Split(d.payload, "/")
		if len(f) != 3 {
			t.Fatalf("unexpected payload %q on %s", d.payload, d.topic)
		}
		key := f[0] + "/" + f[1]
		seq, _ := strconv.Atoi(f[2])
		if prev, ok := last[key]; ok && seq < prev {
			t.Fatalf("order: %s seq %d after %d", key, seq, prev)
		}
		last[key] = seq
	}
	lost := 0
	var example string
	for p := range publishers {
		for i := range count {
			want := fmt.Sprintf("pub-%d/%d/%d", p, i%topics, i)
			if seen[want] == 0 {
				lost++
				example = want
			}
		}
	}
	if lost > 0 {
		t.Fatalf("lost %d of %d messages (for example %s); %d distinct received", lost, publishers*count, example, len(seen))
	}
}

// waitSessionEnded waits until dsd records clientID's session as
// disconnected (the gateway ends a session after its connection's final
// commit) and returns it. A test that reconnects to another gateway waits so
// that the new connection resumes what the old one committed: else the old
// gateway's final commit may come after the new open and be refused, and
// what it acknowledged is sent again (at least once allows it).
func waitSessionEnded(t *testing.T, ctx context.Context, dsdAddr, clientID string) *storagev1.Session {
	t.Helper()
	conn, err := grpc.NewClient(dsdAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sessions := dsdv1.NewSessionServiceClient(conn)
	var got *storagev1.Session
	wait.For(t, 10*time.Second, clientID+"'s session ended", func() bool {
		r, err := sessions.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: clientID})
		got = r.GetSession()
		return err == nil && got != nil && !got.GetRecord().GetConnected()
	})
	return got
}
