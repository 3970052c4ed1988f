package server

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// newProxyConn wraps a connection of a proxy_protocol listener: a PROXY
// protocol v1 or v2 header is required first (none, or a malformed one,
// fails the first read), and RemoteAddr is the client's address it names (the
// proxy's own for a LOCAL header, such as a proxy's health check). The header
// is read on first use, within timeout.
func newProxyConn(nc net.Conn, timeout time.Duration) *proxyproto.Conn {
	return proxyproto.NewConn(nc, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(timeout))
}

// prepare carries out what comes before MQTT on a connection a tcp or tls
// listener admitted, in the connection's goroutine (never in the accept
// loop) and by the connect deadline: the PROXY header and the place of the
// client's address it names (proxy_protocol listeners), then the TLS
// handshake (tls listeners). It returns the connection to read MQTT from and
// the client's address, or false once it has closed gc.
func (s *Server) prepare(l *listener, gc *gatedConn, deadline time.Time) (net.Conn, netip.Addr, bool) {
	var nc net.Conn = gc
	peer := gc.addr
	if l.proxy {
		pc := newProxyConn(gc.Conn, max(time.Until(deadline), time.Millisecond))
		gc.Conn = pc
		if pc.ProxyHeader() == nil {
			s.refuse(l, gc, refusedProxyHeader)
			return nil, netip.Addr{}, false
		}
		peer = peerAddr(pc.RemoteAddr())
		if !s.admitAddr(l, gc, peer) {
			return nil, netip.Addr{}, false
		}
	}
	if l.tls != nil {
		tc := tls.Server(gc, l.tls)
		_ = tc.SetDeadline(deadline)
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.refuse(l, tc, refusedTLSHandshake)
			return nil, netip.Addr{}, false
		}
		_ = tc.SetDeadline(time.Time{})
		nc = tc
	}
	return nc, peer, true
}
