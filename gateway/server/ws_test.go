package server

import (
	"context"
	"github.com/stratamq/strata/internal/testutil"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/packet"
)

func (s *Server) listenerAddr(id string) string {
	for _, a := range s.Addrs() {
		if a.Listener == id {
			return a.Addr
		}
	}
	return ""
}

// dialWS opens a WebSocket to addr with the given Origin ("" for none); it
// returns the HTTP status when the upgrade is refused.
func dialWS(t *testing.T, addr, origin string) (net.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o := &websocket.DialOptions{Subprotocols: []string{"mqtt"}}
	if origin != "" {
		o.HTTPHeader = http.Header{"Origin": {origin}}
	}
	wc, resp, err := websocket.Dial(ctx, "ws://"+addr+"/mqtt", o)
	if err != nil {
		if resp == nil {
			t.Fatal(err)
		}
		return nil, resp.StatusCode
	}
	nc := websocket.NetConn(context.Background(), wc, websocket.MessageBinary)
	t.Cleanup(func() { _ = nc.Close() })
	return nc, http.StatusSwitchingProtocols
}

// TestWebSocketOrigin: a browser page of another origin is refused (403);
// the listener's own host, the allowed_origins patterns and clients without
// an Origin (not browsers) are not.
func TestWebSocketOrigin(t *testing.T) {
	s := testServer(t, func(o *Options) {
		l := o.Config.Listeners["ws"]["default"]
		l.AllowedOrigins = []string{"https://app.example.com", "*.trusted.example"}
		o.Config.Listeners["ws"]["default"] = l
	})
	addr := s.addr("ws")
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{"http://" + addr, http.StatusSwitchingProtocols},
		{"https://app.example.com", http.StatusSwitchingProtocols},
		{"http://a.trusted.example", http.StatusSwitchingProtocols},
		{"http://app.example.com", http.StatusForbidden},
		{"https://evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
	} {
		nc, code := dialWS(t, addr, tc.origin)
		if code != tc.want {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, code, tc.want)
			continue
		}
		if nc != nil {
			c := newClient(t, nc, packet.V5)
			if ack := c.connect("", 0); ack.ReasonCode != packet.Success {
				t.Errorf("Origin %q: CONNACK %v", tc.origin, ack.ReasonCode)
			}
		}
	}
	if m := testutil.Metrics(t, s.HTTPAddr()); !strings.Contains(m, `strata_gateway_connections_refused_total{reason="ws_origin"} 3`) {
		t.Errorf("refusals not counted:\n%s", testutil.Lines(m, "refused"))
	}
}

// TestWebSocketAnonymous: with auth.allow_anonymous = "loopback", anonymous
// clients are admitted on a tcp listener from a loopback address, but not on
// a ws listener unless it sets allow_anonymous itself.
func TestWebSocketAnonymous(t *testing.T) {
	a, err := auth.New(config.Auth{AllowAnonymous: config.AnonymousLoopback, Hash: "bcrypt", BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	s := testServer(t, func(o *Options) {
		o.Authenticator = a
		open := config.AnonymousAllow
		o.Config.Listeners["ws"]["open"] = config.Listener{Bind: "127.0.0.1:0", AllowAnonymous: &open}
	})
	for _, tc := range []struct {
		listener string
		want     packet.ReasonCode
	}{
		{"tcp.default", packet.Success},
		{"ws.default", packet.NotAuthorized},
		{"ws.open", packet.Success},
	} {
		var nc net.Conn
		if strings.HasPrefix(tc.listener, "ws.") {
			nc, _ = dialWS(t, s.listenerAddr(tc.listener), "")
		} else {
			nc = dialFrom(t, "127.0.0.1", s.listenerAddr(tc.listener))
		}
		c := newClient(t, nc, packet.V5)
		if ack := c.connect("", 0); ack.ReasonCode != tc.want {
			t.Errorf("%s: CONNACK %v, want %v", tc.listener, ack.ReasonCode, tc.want)
		}
	}
}

// TestProxyProtocol: on a proxy_protocol listener the client's address is
// the PROXY header's (v1 or v2), and "loopback" is judged from it; a
// connection without a header is closed. On other listeners a PROXY header
// is garbage.
func TestProxyProtocol(t *testing.T) {
	a, err := auth.New(config.Auth{AllowAnonymous: config.AnonymousLoopback, Hash: "bcrypt", BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	s := testServer(t, func(o *Options) {
		o.Authenticator = a
		o.Config.Listeners["tcp"]["proxied"] = config.Listener{Bind: "127.0.0.1:0", ProxyProtocol: true}
	})
	proxied := s.listenerAddr("tcp.proxied")
	header := func(version byte, src string) []byte {
		h := proxyproto.HeaderProxyFromAddrs(version,
			&net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1883})
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		version byte
		src     string
		want    packet.ReasonCode
	}{
		// 203.0.113.7 (TEST-NET-3) is only text in the header.
		{"v1 remote", 1, "203.0.113.7", packet.NotAuthorized},
		{"v2 remote", 2, "203.0.113.7", packet.NotAuthorized},
		{"v1 loopback", 1, "127.0.0.1", packet.Success},
		{"v2 loopback", 2, "127.0.0.1", packet.Success},
	} {
		nc := dialFrom(t, "127.0.0.1", proxied)
		if _, err := nc.Write(header(tc.version, tc.src)); err != nil {
			t.Fatal(err)
		}
		c := newClient(t, nc, packet.V5)
		if ack := c.connect("", 0); ack.ReasonCode != tc.want {
			t.Errorf("%s: CONNACK %v, want %v", tc.name, ack.ReasonCode, tc.want)
		}
	}
	// No header where one is required: closed, counted.
	c := newClient(t, dialFrom(t, "127.0.0.1", proxied), packet.V5)
	c.send(&packet.Connect{Version: packet.V5, ClientID: "x", CleanStart: true})
	c.expectClosed()
	if m := testutil.Metrics(t, s.HTTPAddr()); !strings.Contains(m, `strata_gateway_connections_refused_total{reason="proxy_header"} 1`) {
		t.Errorf("missing header not counted:\n%s", testutil.Lines(m, "refused"))
	}
	// A header where none is configured: garbage, closed without CONNACK.
	nc := dialFrom(t, "127.0.0.1", s.listenerAddr("tcp.default"))
	if _, err := nc.Write(header(1, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	g := newClient(t, nc, packet.V5)
	g.send(&packet.Connect{Version: packet.V5, ClientID: "y", CleanStart: true})
	p, err := g.recv()
	if err == nil {
		t.Fatalf("a PROXY header on a plain listener was answered with %s", p.Type())
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a PROXY header on a plain listener left the connection open")
	}
}
