package server

import (
	"crypto/tls"
	"github.com/stratamq/strata/internal/testutil"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// dialFrom opens a TCP connection to addr from the loopback address local
// (127.0.0.1 to 127.0.0.4, all on lo).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return nc
}

// expectRefused checks that the server closed nc without a byte.
func expectRefused(t *testing.T, nc net.Conn, what string) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: still open", what)
	}
	if n != 0 {
		t.Fatalf("%s: got %d bytes before the close, want none", what, n)
	}
}

// TestConnectionLimits: gateway.max_connections and
// gateway.max_connections_per_address close what is over them at accept,
// counted by reason; a place is given back when its connection closes.
func TestConnectionLimits(t *testing.T) {
	s := testServer(t, func(o *Options) {
		o.Config.Gateway.MaxConnections = 3
		o.Config.Gateway.MaxConnectionsPerAddress = 2
	})
	addr := s.addr("tcp")
	a1 := newClient(t, dialFrom(t, "127.0.0.1", addr), packet.V5)
	a1.connect("a1", 0)
	a2 := newClient(t, dialFrom(t, "127.0.0.1", addr), packet.V5)
	a2.connect("a2", 0)
	expectRefused(t, dialFrom(t, "127.0.0.1", addr), "third connection from 127.0.0.1")
	b1 := newClient(t, dialFrom(t, "127.0.0.2", addr), packet.V5)
	b1.connect("b1", 0)
	expectRefused(t, dialFrom(t, "127.0.0.3", addr), "fourth connection")
	// Closing one gives its places back.
	a1.send(&packet.Disconnect{})
	a1.expectClosed()
	wait.For(t, 5*time.Second, "a place to be given back", func() bool { return s.gate.total() == 2 })
	c := newClient(t, dialFrom(t, "127.0.0.1", addr), packet.V5)
	if ack := c.connect("a3", 0); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	m := testutil.Metrics(t, s.HTTPAddr())
	for _, want := range []string{
		`strata_gateway_connections_refused_total{reason="max_connections"} 1`,
		`strata_gateway_connections_refused_total{reason="max_connections_per_address"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("missing %s in\n%s", want, testutil.Lines(m, "refused"))
		}
	}
}

// TestConnRateCountsAccepts: mqtt.max_conn_rate is taken at accept, so a
// connection that only does a TLS handshake (and never CONNECTs) uses the
// zone's token as well: the next one is closed at accept.
func TestConnRateCountsAccepts(t *testing.T) {
	s := testServer(t, func(o *Options) {
		o.Config.MQTT.MaxConnRate = 1
		o.Admission = auth.NewAdmission(o.Config)
	})
	tc, err := tls.Dial("tcp", s.addr("tls"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	expectRefused(t, dialFrom(t, "127.0.0.1", s.addr("tcp")), "a connection over the rate")
	if m := testutil.Metrics(t, s.HTTPAddr()); !strings.Contains(m, `strata_gateway_connections_refused_total{reason="max_conn_rate"} 1`) {
		t.Fatalf("not counted:\n%s", testutil.Lines(m, "refused"))
	}
}

// TestConnectPacketSizeBeforeConnect: until CONNECT, nothing larger than
// mqtt.max_connect_packet_size is read; a larger first packet closes the
// connection without an answer.
func TestConnectPacketSizeBeforeConnect(t *testing.T) {
	s := testServer(t, func(o *Options) { o.Config.MQTT.MaxConnectPacketSize = 4 << 10 })
	c := newClient(t, dial(t, s, "tcp"), packet.V5)
	c.send(&packet.Connect{Version: packet.V5, ClientID: "big", CleanStart: true,
		UsernameFlag: true, Username: "u", PasswordFlag: true, Password: make([]byte, 8<<10)})
	c.expectClosed()
	ok := newClient(t, dial(t, s, "tcp"), packet.V5)
	if ack := ok.connect("small", 0); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	// After CONNECT the zone's max_packet_size (1 MiB) applies.
	ok.send(&packet.Publish{Topic: "a", Payload: make([]byte, 16<<10)})
	ok.send(&packet.Pingreq{})
	if _, isPong := ok.mustRecv().(*packet.Pingresp); !isPong {
		t.Fatal("no PINGRESP after a 16 KiB PUBLISH")
	}
}

// TestConnectTimeoutConfig: mqtt.connect_timeout closes a socket that
// never sends CONNECT, and a TLS socket that never finishes its handshake.
func TestConnectTimeoutConfig(t *testing.T) {
	s := testServer(t, func(o *Options) { o.Config.MQTT.ConnectTimeout = config.Duration(300 * time.Millisecond) })
	for _, typ := range []string{"tcp", "tls"} {
		nc := dialFrom(t, "127.0.0.1", s.addr(typ))
		start := time.Now()
		expectRefused(t, nc, typ+" socket without CONNECT")
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("%s: closed after %v", typ, d)
		}
	}
	if m := testutil.Metrics(t, s.HTTPAddr()); !strings.Contains(m, `strata_gateway_connections_refused_total{reason="tls_handshake"} 1`) {
		t.Fatalf("handshake timeout not counted:\n%s", testutil.Lines(m, "refused"))
	}
}
