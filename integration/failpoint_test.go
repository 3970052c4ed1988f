package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/failpoint"
	"github.com/stratamq/strata/internal/mqttrec"
	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestGatewayFailpoints kills gateway A (SIGKILL from inside, at a named
// point) while a QoS 2 publisher and a QoS 2 and a QoS 1 durable subscriber
// use it; everyone reconnects to gateway B. Verdicts come from mqttrec,
// which applies the MQTT receiver rules itself: every message reaches each
// subscriber's application (lost = 0), the QoS 2 one exactly once, every
// QoS 1 repeat carries DUP, and no protocol violation is seen.
func TestGatewayFailpoints(t *testing.T) {
	points := []string{
		"gateway-after-store=40",        // inbound: committed in dsd, PUBREC not sent
		"gateway-after-qos2-send=40",    // outbound: QoS 2 PUBLISH written, progress not committed
		"gateway-after-pubrec=40",       // outbound: subscriber's PUBREC read, rec not committed
		"gateway-before-pubrel=40",      // outbound: rec committed, PUBREL not written
		"gateway-delivering=150",        // anywhere in the middle of delivery
		"gateway-after-retained-send=1", // (not hit: no retained traffic) control: nothing breaks
	}
	if testing.Short() {
		points = points[:2]
	}
	for _, fp := range points {
		t.Run(fp, func(t *testing.T) { testFailpoint(t, fp) })
	}
}

func testFailpoint(t *testing.T, point string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2, []string{failpoint.EnvVar + "=" + point})
	target := &gatewayAddr{addr: c.addr(0)}
	addr := target.get
	go func() {
		select {
		case <-c.gateways[0].Done():
			target.set(c.addr(1))
		case <-ctx.Done():
		}
	}()

	const n = 200
	q2 := newRecSub(t, ctx, addr, "fp-sub-q2", 2)
	q1 := newRecSub(t, ctx, addr, "fp-sub-q1", 1)

	// The publisher: QoS 2, durable, resends what is unfinished after a
	// reconnect (DUP PUBLISH, or PUBREL).
	pub := mqttrec.NewSession(mqttrec.SessionOptions{})
	var conn *mqttrec.Conn
	connectPub := func() {
		wait.For(t, 20*time.Second, "the publisher to connect", func() bool {
			cn, ack, err := mqttrec.Connect(ctx, addr(), pub, mqttrec.Options{ClientID: "fp-pub", SessionExpiry: 3600, KeepAlive: 30})
			if err != nil {
				return false
			}
			if conn != nil && !ack.SessionPresent {
				t.Fatalf("publisher: session present = 0 after the crash")
			}
			if _, err := cn.Resend(ctx); err != nil {
				cn.Close()
				return false
			}
			conn = cn
			return true
		})
	}
	connectPub()
	for i := 0; i < n; {
		rc, err := conn.Publish(ctx, &packet.Publish{Topic: fmt.Sprintf("fp/%d", i%4), QoS: 2, Payload: []byte(fmt.Sprintf("fp-pub/%d", i))})
		switch {
		case err == nil && rc == packet.Success:
			i++
		case errors.Is(err, mqttrec.ErrConnectionLost):
			connectPub() // Resend finishes message i
			i++
		default:
			t.Fatalf("publish %d: %v, %v", i, rc, err)
		}
	}
	_ = conn.Disconnect(&packet.Disconnect{})

	for _, s := range []*recSub{q2, q1} {
		if !wait.Until(30*time.Second, func() bool { return s.distinct() >= n }) {
			for _, line := range strings.Split(testutil.Metrics(t, c.gateways[1].Addrs["http"]), "\n") {
				if strings.HasPrefix(line, "strata_gateway_messages") || strings.HasPrefix(line, "strata_gateway_inflight") || strings.HasPrefix(line, "strata_gateway_dsd_call_seconds_count") || strings.HasPrefix(line, "strata_gateway_packets_") {
					t.Logf("gateway B: %s", line)
				}
			}
			t.Logf("session:\n%s", dstool(t, c.dsd.GRPCAddr, "sessions", "show", s.id))
		}
		s.stop()
		s.check(t, n)
	}
	select {
	case <-c.gateways[0].Done():
		t.Logf("%s: gateway A died; %s", point, q2.summary())
	default:
		t.Logf("%s: not hit; %s", point, q2.summary())
	}
}

// recSub is a durable mqttrec subscriber that follows addr() across
// crashes.
type recSub struct {
	id   string
	qos  byte
	sess *mqttrec.Session
	mu   sync.Mutex
	// delivered counts deliveries to the application per payload; dupOK
	// is false once a repeat came without DUP.
	delivered   map[string]int
	repeatNoDup []string
	reconnects  int
	notPresent  int
	cancel      context.CancelFunc
	done        chan struct{}
}

func newRecSub(t *testing.T, ctx context.Context, addr func() string, id string, qos byte) *recSub {
	t.Helper()
	s := &recSub{id: id, qos: qos, delivered: map[string]int{}, done: make(chan struct{})}
	s.sess = mqttrec.NewSession(mqttrec.SessionOptions{OnMessage: func(m mqttrec.Message) {
		if !m.Delivered {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.delivered[string(m.Payload)]++
		if s.delivered[string(m.Payload)] > 1 && m.QoS == 1 && !m.Dup {
			s.repeatNoDup = append(s.repeatNoDup, string(m.Payload))
		}
	}})
	ctx, s.cancel = context.WithCancel(ctx)
	opts := mqttrec.Options{ClientID: id, CleanStart: true, SessionExpiry: 3600, KeepAlive: 30, ReceiveMaximum: 10}
	cn, _, err := mqttrec.Connect(ctx, addr(), s.sess, opts)
	if err != nil {
		t.Fatal(err)
	}
	if codes, err := cn.Subscribe(ctx, 0, packet.Subscription{Filter: "fp/+", QoS: qos}); err != nil || codes[0] != packet.ReasonCode(qos) {
		t.Fatalf("%s: SUBACK %v, %v", id, codes, err)
	}
	opts.CleanStart = false
	go func() {
		defer close(s.done)
		for {
			select {
			case <-ctx.Done():
				_ = cn.Disconnect(&packet.Disconnect{})
				return
			case <-cn.Done():
			}
			for {
				next, ack, err := mqttrec.Connect(ctx, addr(), s.sess, opts)
				if err == nil {
					s.mu.Lock()
					s.reconnects++
					if !ack.SessionPresent {
						s.notPresent++
					}
					s.mu.Unlock()
					cn = next
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond): // reconnect backoff
				}
			}
		}
	}()
	return s
}

func (s *recSub) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.delivered)
}

func (s *recSub) stop() {
	s.cancel()
	<-s.done
}

func (s *recSub) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	delivered, suppressed := s.sess.Counts()
	return fmt.Sprintf("%s: %d distinct, %d delivered, %d suppressed duplicates, %d reconnects", s.id, len(s.delivered), delivered, suppressed, s.reconnects)
}

// check: every message delivered; QoS 2 exactly once; QoS 1 repeats with
// DUP; session present on every reconnect; no violation.
func (s *recSub) check(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		p := fmt.Sprintf("fp-pub/%d", i)
		switch got := s.delivered[p]; {
		case got == 0:
			t.Errorf("%s: lost %s", s.id, p)
		case got > 1 && s.qos == 2:
			t.Errorf("%s: QoS 2 message %s delivered %d times", s.id, p, got)
		}
	}
	if len(s.repeatNoDup) > 0 {
		t.Errorf("%s: QoS 1 repeats without DUP: %v", s.id, s.repeatNoDup)
	}
	if s.notPresent > 0 {
		t.Errorf("%s: %d reconnects found no session", s.id, s.notPresent)
	}
	if v := s.sess.Violations(); len(v) > 0 {
		t.Errorf("%s: protocol violations: %v", s.id, v)
	}
}

// TestCrashGatewayUnderQoS12Load kills the gateway (SIGKILL) 5 times (20
// with make torture) under QoS 1 and QoS 2 load and starts a new one each
// time; clients reconnect to the new one. Lost = 0, no QoS 2 message
// reaches an application twice, QoS 1 repeats carry DUP, every reconnect
// finds its session.
func TestCrashGatewayUnderQoS12Load(t *testing.T) {
	kills := 5
	if testutil.Torture() {
		kills = 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 1)
	target := &gatewayAddr{addr: c.addr(0)}
	addr := target.get
	q2 := newRecSub(t, ctx, addr, "kill-sub-q2", 2)
	q1 := newRecSub(t, ctx, addr, "kill-sub-q1", 1)

	var stop atomic.Bool
	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() { pubDone <- publishQoS2(ctx, addr, "fp-pub", &stop, &published) }()
	for i := range kills {
		before := published.Load()
		wait.For(t, 30*time.Second, fmt.Sprintf("load before kill %d", i+1), func() bool { return published.Load() >= before+50 })
		c.gateways[len(c.gateways)-1].Kill()
		g := c.addGateway(t, ctx, nil)
		target.set(g.Addrs["tcp.default"])
	}
	before := published.Load()
	wait.For(t, 30*time.Second, "load after the last kill", func() bool { return published.Load() >= before+50 })
	stop.Store(true)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	n := int(published.Load())
	for _, s := range []*recSub{q2, q1} {
		wait.For(t, 30*time.Second, s.id+" to get every message", func() bool { return s.distinct() >= n })
		s.stop()
		s.check(t, n)
		t.Logf("%d gateway kills, %d messages: %s", kills, n, s.summary())
	}
}

// publishQoS2 publishes "<id>/<i>" at QoS 2 on fp/<i mod 4> until stop
// is set, reconnecting to addr() after each crash and resending what is
// unfinished; published counts the messages completed, exactly.
func publishQoS2(ctx context.Context, addr func() string, id string, stop *atomic.Bool, published *atomic.Int64) error {
	s := mqttrec.NewSession(mqttrec.SessionOptions{NoLog: true})
	var conn *mqttrec.Conn
	connect := func() error {
		for {
			cn, ack, err := mqttrec.Connect(ctx, addr(), s, mqttrec.Options{ClientID: id, SessionExpiry: 3600, KeepAlive: 30})
			if err == nil {
				if conn != nil && !ack.SessionPresent {
					return fmt.Errorf("publisher: session present = 0 after a crash")
				}
				if n, err := cn.Resend(ctx); err == nil {
					published.Add(int64(n))
					conn = cn
					return nil
				}
				cn.Close()
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond): // reconnect backoff
			}
		}
	}
	if err := connect(); err != nil {
		return err
	}
	for i := 0; !stop.Load(); {
		rc, err := conn.Publish(ctx, &packet.Publish{Topic: fmt.Sprintf("fp/%d", i%4), QoS: 2, Payload: []byte(fmt.Sprintf("%s/%d", id, i))})
		switch {
		case err == nil && rc == packet.Success:
			published.Add(1)
			i++
		case errors.Is(err, mqttrec.ErrConnectionLost):
			i++ // the reconnect resends it
			if err := connect(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("publish %d: %v, %v", i, rc, err) // lint:nowrap err is nil when the reason code is the failure
		}
	}
	return conn.Disconnect(&packet.Disconnect{})
}

// gatewayAddr is where clients connect now: it moves when a gateway dies.
type gatewayAddr struct {
	mu   sync.Mutex
	addr string
}

func (g *gatewayAddr) get() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

func (g *gatewayAddr) set(addr string) {
	g.mu.Lock()
	g.addr = addr
	g.mu.Unlock()
}
