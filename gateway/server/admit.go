package server

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// Reasons a connection is refused before CONNECT, the values of the reason
// label of strata_gateway_connections_refused_total.
const (
	refusedMaxConnections = "max_connections"
	refusedMaxPerAddress  = "max_connections_per_address"
	refusedConnRate       = "max_conn_rate"
	refusedProxyHeader    = "proxy_header"
	refusedTLSHandshake   = "tls_handshake"
	refusedOrigin         = "ws_origin"
)

// gate counts the open connections (accepted sockets, before and after
// CONNECT), in total and per client address, against
// gateway.max_connections and gateway.max_connections_per_address.
type gate struct {
	maxTotal, maxPerAddr int
	mu                   struct {
		sync.Mutex
		total   int
		perAddr map[netip.Addr]int
	}
}

func newGate(maxTotal, maxPerAddr int) *gate {
	g := &gate{maxTotal: maxTotal, maxPerAddr: maxPerAddr}
	g.mu.perAddr = make(map[netip.Addr]int)
	return g
}

// enter takes a place among all connections; false when there is none.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.maxTotal > 0 && g.mu.total >= g.maxTotal {
		return false
	}
	g.mu.total++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	g.mu.total--
	g.mu.Unlock()
}

// enterAddr takes a place among a's connections; false when there is none.
func (g *gate) enterAddr(a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.mu.perAddr[a]
	if g.maxPerAddr > 0 && n >= g.maxPerAddr {
		return false
	}
	g.mu.perAddr[a] = n + 1
	return true
}

func (g *gate) leaveAddr(a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.mu.perAddr[a]; n > 1 {
		g.mu.perAddr[a] = n - 1
	} else {
		delete(g.mu.perAddr, a)
	}
}

// gatedConn is an admitted connection: closing it gives its places back
// (once), whoever closes it (the connection, TLS or the WebSocket library).
type gatedConn struct {
	net.Conn
	g    *gate
	once sync.Once
	// addr is the client address counted in g, when hasAddr.
	addr    netip.Addr
	hasAddr bool
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.hasAddr {
			c.g.leaveAddr(c.addr)
		}
		c.g.leave()
	})
	return err
}

// peerAddr returns the IP address of a connection's peer (unmapped from
// IPv4-in-IPv6), or the zero Addr when it has none.
func peerAddr(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admit decides a connection the listener accepted: a place among all
// connections, a token of the zone's connection rate (mqtt.max_conn_rate:
// every accept counts, and so every TLS handshake and WebSocket upgrade) and,
// unless the client's address comes later in a PROXY header, a place among
// its address's connections. A refused connection is closed and counted.
func (s *Server) admit(l *listener, nc net.Conn) (*gatedConn, bool) {
	if !s.gate.enter() {
		s.refuse(l, nc, refusedMaxConnections)
		return nil, false
	}
	gc := &gatedConn{Conn: nc, g: s.gate}
	if a := s.opts.Admission; a != nil {
		if err := a.Admit(l.zone); err != nil {
			s.refuse(l, gc, refusedConnRate)
			return nil, false
		}
	}
	if !l.proxy && !s.admitAddr(l, gc, peerAddr(nc.RemoteAddr())) {
		return nil, false
	}
	return gc, true
}

// admitAddr takes a place among the connections of the client address a
// for gc, or closes it and counts the refusal.
func (s *Server) admitAddr(l *listener, gc *gatedConn, a netip.Addr) bool {
	if !a.IsValid() {
		return true // not an IP connection (tests over pipes): no address to count
	}
	if !s.gate.enterAddr(a) {
		s.refuse(l, gc, refusedMaxPerAddress)
		return false
	}
	gc.addr, gc.hasAddr = a, true
	return true
}

func (s *Server) refuse(l *listener, nc net.Conn, reason string) {
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.log.Debug("connection refused", "listener", l.id, "remote", rawRemote(nc), "reason", reason)
	_ = nc.Close()
}

// rawRemote names the socket peer of nc without waiting for a PROXY header
// (a proxyproto.Conn's RemoteAddr reads it).
func rawRemote(nc net.Conn) string {
	for {
		switch c := nc.(type) {
		case *gatedConn:
			nc = c.Conn
		case *proxyproto.Conn:
			nc = c.Raw()
		default:
			return nc.RemoteAddr().String()
		}
	}
}

// gateListener admits what a WebSocket listener's HTTP server accepts, as
// the accept loop does for tcp and tls listeners.
type gateListener struct {
	net.Listener
	s *Server
	l *listener
}

func (gl gateListener) Accept() (net.Conn, error) {
	for {
		nc, err := gl.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gl.l.proxy {
			nc = newProxyConn(nc, gl.s.opts.ConnectTimeout)
		}
		if gc, ok := gl.s.admit(gl.l, nc); ok {
			return gc, nil
		}
	}
}

// connectDeadline is when a connection accepted at accepted must have sent
// its CONNECT (mqtt.connect_timeout): the PROXY header, the TLS handshake
// and the CONNECT share it.
func (s *Server) connectDeadline(accepted time.Time) time.Time {
	return accepted.Add(s.opts.ConnectTimeout)
}

// total returns the open connections counted.
func (g *gate) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.total
}
