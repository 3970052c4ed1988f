package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/testpki"
)

// transports are the listener types every connection test runs over
// (STYLE.md rule 15).
var transports = []string{"tcp", "ws", "tls", "wss"}

// testServer starts a gateway with one listener of each type on free
// loopback ports; opts may adjust the options before Listen.
func testServer(t testing.TB, opts ...func(*Options)) *Server {
	t.Helper()
	certFile, keyFile := testpki.New(t).Issue(t, "strata-test", true)
	cfg := config.Default()
	tlsL := config.Listener{Bind: "127.0.0.1:0", Zone: "default", CertFile: certFile, KeyFile: keyFile}
	cfg.Listeners = map[string]map[string]config.Listener{
		"tcp": {"default": {Bind: "127.0.0.1:0", Zone: "default"}},
		"ws":  {"default": {Bind: "127.0.0.1:0", Zone: "default"}},
		"tls": {"default": tlsL},
		"wss": {"default": tlsL},
	}
	cfg.Gateway.HTTPListen = "127.0.0.1:0"
	o := Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (s *Server) addr(typ string) string {
	for _, a := range s.Addrs() {
		if a.Type == typ {
			return a.Addr
		}
	}
	return ""
}

// dial opens a raw connection of the given transport.
func dial(t *testing.T, s *Server, typ string) net.Conn {
	t.Helper()
	addr := s.addr(typ)
	tlsCfg := &tls.Config{InsecureSkipVerify: true} // the test's self-signed certificate
	switch typ {
	case "tcp":
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return nc
	case "tls":
		nc, err := tls.Dial("tcp", addr, tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	scheme := "ws://"
	hc := &websocket.DialOptions{Subprotocols: []string{"mqtt"}}
	if typ == "wss" {
		scheme = "wss://"
		tr := &http.Transport{TLSClientConfig: tlsCfg}
		t.Cleanup(tr.CloseIdleConnections)
		hc.HTTPClient = &http.Client{Transport: tr}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wc, _, err := websocket.Dial(ctx, scheme+addr+"/mqtt", hc)
	if err != nil {
		t.Fatal(err)
	}
	if wc.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q, want mqtt", wc.Subprotocol())
	}
	return websocket.NetConn(context.Background(), wc, websocket.MessageBinary)
}

// client is a raw MQTT client for tests.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
	v  packet.Version
}

func newClient(t *testing.T, nc net.Conn, v packet.Version) *client {
	t.Cleanup(func() { _ = nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc), v: v}
}

func (c *client) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Append(nil, c.v)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads the next packet, or returns the read error (io.EOF when the
// server closed).
func (c *client) recv() (packet.Packet, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	return packet.ReadPacket(c.br, c.v, 0)
}

func (c *client) mustRecv() packet.Packet {
	c.t.Helper()
	p, err := c.recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// expectClosed reads until the server closes the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	for {
		p, err := c.recv()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatal("connection still open")
			}
			return
		}
		c.t.Logf("before close: %s", p.Type())
	}
}

func (c *client) connect(id string, keepAlive uint16) *packet.Connack {
	c.t.Helper()
	c.send(&packet.Connect{Version: c.v, ClientID: id, CleanStart: true, KeepAlive: keepAlive})
	ack, ok := c.mustRecv().(*packet.Connack)
	if !ok {
		c.t.Fatal("no CONNACK")
	}
	return ack
}
