package integration

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestGatewayTakeover runs two gateway processes on one dsd: a client id
// that connects to B takes the session over from A (A's MQTT 5 client gets
// DISCONNECT 0x8E, B's CONNACK says session present), and a durable session
// survives the death of the gateway that served it.
func TestGatewayTakeover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c := startCluster(t, ctx, 2)
	a, b := c.gateways[0], c.gateways[1]
	addrA, addrB := a.Addrs["tcp.default"], b.Addrs["tcp.default"]

	t.Run("mqtt5-across-gateways", func(t *testing.T) {
		pc, disconnected := dialPaho(ctx, t, addrA, "roamer", false, 300)
		defer pc.Disconnect(&paho.Disconnect{})
		if pc.present {
			t.Fatal("first CONNECT of roamer: session present")
		}
		c := dialRaw(t, addrB, packet.V5)
		if ack := c.connectDurable(t, "roamer", 300); ack.ReasonCode != 0 || !ack.SessionPresent {
			t.Fatalf("CONNACK on B: %+v, want 0x00 with session present", ack)
		}
		select {
		case code := <-disconnected:
			if code != byte(packet.SessionTakenOver) {
				t.Fatalf("A's client got DISCONNECT 0x%02X, want 0x8E", code)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("A's client was not disconnected after the takeover on B")
		}
		// The session stays with B: its connection is not disturbed.
		c.send(t, &packet.Pingreq{})
		if _, ok := c.recv(t).(*packet.Pingresp); !ok {
			t.Fatal("B's connection broken after the takeover")
		}
		c.send(t, &packet.Disconnect{})
		c.waitClosed(t, 5*time.Second)
	})

	t.Run("mqtt311-across-gateways", func(t *testing.T) {
		old := dialRaw(t, addrA, packet.V311)
		if ack := old.connectDurable(t, "roamer-311", 0); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK on A: %+v", ack)
		}
		c := dialRaw(t, addrB, packet.V311)
		if ack := c.connectDurable(t, "roamer-311", 0); ack.ReasonCode != 0 || !ack.SessionPresent {
			t.Fatalf("CONNACK on B: %+v, want 0x00 with session present", ack)
		}
		old.waitClosed(t, 5*time.Second) // 3.1.1: a close, no DISCONNECT
		c.send(t, &packet.Disconnect{})
		c.waitClosed(t, 5*time.Second)
	})

	t.Run("session-survives-gateway-death", func(t *testing.T) {
		c := dialRaw(t, addrA, packet.V5)
		if ack := c.connectDurable(t, "survivor", 300); ack.ReasonCode != 0 || ack.SessionPresent {
			t.Fatalf("CONNACK on A: %+v, want 0x00, no session", ack)
		}
		c.send(t, &packet.Disconnect{})
		c.waitClosed(t, 5*time.Second)
		// A second session is still connected to A when A dies.
		held := dialRaw(t, addrA, packet.V5)
		if ack := held.connectDurable(t, "survivor-held", 300); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK on A: %+v", ack)
		}
		a.Kill()
		for _, id := range []string{"survivor", "survivor-held"} {
			c = dialRaw(t, addrB, packet.V5)
			if ack := c.connectDurable(t, id, 300); ack.ReasonCode != 0 || !ack.SessionPresent {
				t.Fatalf("CONNACK of %s on B after A died: %+v, want 0x00 with session present", id, ack)
			}
			c.send(t, &packet.Disconnect{})
			c.waitClosed(t, 5*time.Second)
		}
	})
}

// TestGatewayDSDOutage stops dsd (SIGSTOP) under a gateway whose heartbeat
// is 500 ms: new CONNECTs are refused with 0x88 / 0x03 within a bounded
// time, the gateway closes its connections once the lease is gone (MQTT 5:
// DISCONNECT 0x89), /readyz says not ready, and once dsd runs again
// (SIGCONT) clients connect again.
func TestGatewayDSDOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cfg := filepath.Join(t.TempDir(), "strata.toml")
	if err := os.WriteFile(cfg, []byte("[durable_sessions]\ngateway_heartbeat_interval = \"500ms\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data"), ConfigFile: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)
	g, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: d.GRPCAddr, ConfigFile: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop(10 * time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s\ndsd log:\n%s", g.Log(), d.Log())
		}
	}()
	addr, readyz := g.Addrs["tcp.default"], "http://"+g.Addrs["http"]+"/readyz"
	if code := httpStatus(t, readyz); code != http.StatusOK {
		t.Fatalf("/readyz = %d before the outage", code)
	}
	pc, disconnected := dialPaho(ctx, t, addr, "outage-v5", false, 300)
	defer pc.Disconnect(&paho.Disconnect{})
	old311 := dialRaw(t, addr, packet.V311)
	if ack := old311.connectDurable(t, "outage-311", 0); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}

	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	defer d.cmd.Process.Signal(syscall.SIGCONT)

	// The lease (2 × 500 ms without an acknowledged heartbeat) ends within
	// about 1.5 s; allow for a loaded machine.
	const bound = 5 * time.Second
	select {
	case code := <-disconnected:
		if code != byte(packet.ServerBusy) {
			t.Fatalf("MQTT 5 client got DISCONNECT 0x%02X, want 0x89", code)
		}
	case <-time.After(bound):
		t.Fatalf("MQTT 5 client still connected %v after dsd stopped", bound)
	}
	old311.waitClosed(t, bound)
	t.Logf("connections closed %v after SIGSTOP", time.Since(stopped).Round(time.Millisecond))

	start := time.Now()
	c := dialRaw(t, addr, packet.V5)
	if ack := c.connectDurable(t, "newcomer-v5", 300); ack.ReasonCode != packet.ServerUnavailable {
		t.Fatalf("CONNECT while dsd is stopped: %+v, want CONNACK 0x88", ack)
	}
	c3 := dialRaw(t, addr, packet.V311)
	if ack := c3.connectDurable(t, "newcomer-311", 0); byte(ack.ReasonCode) != packet.ConnectRefusedServerUnavailable {
		t.Fatalf("3.1.1 CONNECT while dsd is stopped: %+v, want CONNACK 0x03", ack)
	}
	if d := time.Since(start); d > bound {
		t.Fatalf("refusing CONNECTs took %v", d)
	}
	if code := httpStatus(t, readyz); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d while dsd is stopped, want 503", code)
	}

	if err := d.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 15*time.Second, "/readyz after SIGCONT", func() bool { return httpStatus(t, readyz) == http.StatusOK })
	c = dialRaw(t, addr, packet.V5)
	if ack := c.connectDurable(t, "outage-v5", 300); ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatalf("CONNECT after dsd is back: %+v, want 0x00 with session present", ack)
	}
	c.send(t, &packet.Disconnect{})
	c.waitClosed(t, 5*time.Second)
}

// connectDurable sends CONNECT without Clean Start (MQTT 5: with a Session
// Expiry Interval) and returns the CONNACK.
func (c *rawClient) connectDurable(t *testing.T, id string, expiry uint32) *packet.Connack {
	t.Helper()
	p := &packet.Connect{Version: c.v, ClientID: id, KeepAlive: 30}
	if c.v == packet.V5 && expiry > 0 {
		p.Properties.Present.Add(packet.PropSessionExpiryInterval)
		p.Properties.SessionExpiryInterval = expiry
	}
	c.send(t, p)
	ack, ok := c.recv(t).(*packet.Connack)
	if !ok {
		t.Fatalf("CONNECT of %s: no CONNACK", id)
	}
	return ack
}

type pahoConn struct {
	*paho.Client
	present bool
}

// dialPaho connects a paho MQTT 5 client; the channel receives the reason
// code of a DISCONNECT from the server.
func dialPaho(ctx context.Context, t *testing.T, addr, id string, clean bool, expiry uint32) (*pahoConn, <-chan byte) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	disconnected := make(chan byte, 1)
	c := paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case disconnected <- d.ReasonCode:
			default:
			}
		},
	})
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatalf("paho CONNECT of %s: %v", id, err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("paho CONNACK of %s: 0x%02X", id, ca.ReasonCode)
	}
	return &pahoConn{Client: c, present: ca.SessionPresent}, disconnected
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
