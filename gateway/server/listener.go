package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/session"
	"github.com/stratamq/strata/internal/tlsconf"
)

// listenerTypes are the listener types, in the order they are started and
// listed.
var listenerTypes = []string{"tcp", "ws", "tls", "wss"}

// wsSubprotocols are the WebSocket subprotocols accepted: "mqtt" (MQTT
// 3.1.1 and 5, section 6) and the older names some clients still offer.
var wsSubprotocols = []string{"mqtt", "mqttv3.1", "mqtt-v3", "mqtt-v3.1.1", "mqtt-v5"}

// listener is one bound listener (listeners.<type>.<name>).
type listener struct {
	id, typ, name string
	zone          string
	cfg           session.Config
	// certIdentity is use_identity_as_username: the field of the verified
	// client certificate that is the username ("" for none).
	certIdentity string
	// anonymous, when set, replaces auth.allow_anonymous on this listener
	// (listeners.<type>.<name>.allow_anonymous; false for ws and wss unless
	// set). "loopback" is judged from each client's address.
	anonymous *config.AnonymousMode
	// proxy: a PROXY protocol header starts every connection.
	proxy bool
	// origins are the allowed Origin patterns of a ws or wss listener.
	origins []string
	ln      net.Listener
	tls     *tls.Config
	// ws serves the WebSocket upgrade (ws, wss).
	ws   *http.Server
	path string
}

func (s *Server) newListener(typ, name string, lc config.Listener) (*listener, error) {
	zone := lc.Zone
	if zone == "" {
		zone = "default"
	}
	l := &listener{
		id: typ + "." + name, typ: typ, name: name, zone: zone,
		cfg:          zoneConfig(s.opts.Config, zone, s.opts.ConnectTimeout),
		anonymous:    lc.AllowAnonymous,
		proxy:        lc.ProxyProtocol,
		origins:      lc.AllowedOrigins,
		path:         lc.Path,
		certIdentity: lc.UseIdentityAsUsername,
	}
	if s.sys != nil {
		l.cfg.LocalRetained = s.sys.retained
	}
	if l.anonymous == nil && (typ == "ws" || typ == "wss") {
		// A browser page of any site can open a WebSocket to a listener its
		// user reaches: anonymous access there is opted into, never
		// inherited.
		deny := config.AnonymousDeny
		l.anonymous = &deny
	}
	if l.path == "" {
		l.path = "/mqtt"
	}
	if typ == "tls" || typ == "wss" {
		cfg, err := loadTLS(lc)
		if err != nil {
			return nil, fmt.Errorf("gateway: listeners.%s: %w", l.id, err)
		}
		l.tls = cfg
	}
	ln, err := net.Listen("tcp", lc.Bind)
	if err != nil {
		return nil, fmt.Errorf("gateway: listeners.%s: %w", l.id, err)
	}
	l.ln = ln
	if typ == "ws" || typ == "wss" {
		mux := http.NewServeMux()
		mux.HandleFunc(l.path, func(w http.ResponseWriter, r *http.Request) { s.serveWS(l, w, r) })
		l.ws = &http.Server{
			Handler: mux,
			// The upgrade request is what a WebSocket sends before CONNECT.
			ReadHeaderTimeout: s.opts.ConnectTimeout,
			IdleTimeout:       s.opts.ConnectTimeout,
			MaxHeaderBytes:    wsMaxHeaderBytes,
			ConnContext: func(ctx context.Context, nc net.Conn) context.Context {
				return context.WithValue(ctx, wsConnKey{}, nc)
			},
		}
	}
	return l, nil
}

// loadTLS builds the server TLS configuration of a tls or wss listener.
func loadTLS(lc config.Listener) (*tls.Config, error) {
	cfg, err := tlsconf.Server(lc.CertFile, lc.KeyFile, lc.CACertFile, tls.VerifyClientCertIfGiven)
	if err != nil {
		return nil, err
	}
	if lc.VerifyPeer {
		if cfg.ClientCAs == nil {
			return nil, errors.New("verify_peer needs cacertfile")
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// wsMaxHeaderBytes bounds the header of a WebSocket upgrade request.
const wsMaxHeaderBytes = 16 << 10

// wsConnKey finds the admitted connection of a WebSocket request in its
// context.
type wsConnKey struct{}

// serveListener accepts until the listener is closed.
func (s *Server) serveListener(l *listener) {
	if l.ws != nil {
		var ln net.Listener = gateListener{Listener: l.ln, s: s, l: l}
		if l.tls != nil {
			cfg := l.tls.Clone()
			cfg.NextProtos = []string{"http/1.1"}
			ln = tls.NewListener(ln, cfg)
		}
		_ = l.ws.Serve(ln)
		return
	}
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "listener", l.id, "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				// Close does not wait out the delay; the next Accept
				// sees the closed listener.
				t.Stop()
			}
			continue
		}
		delay = 0
		accepted := time.Now()
		gc, ok := s.admit(l, nc)
		if !ok {
			continue
		}
		if !s.enter() {
			_ = gc.Close()
			return
		}
		go func() {
			// The PROXY header and the TLS handshake run here, in the
			// connection's goroutine, by its connect deadline.
			nc, peer, ok := s.prepare(l, gc, s.connectDeadline(accepted))
			if !ok {
				s.wg.Done()
				return
			}
			s.serveConn(l, nc, peer, accepted, nil) // leaves wg when the connection ends
		}()
	}
}

// serveWS upgrades an HTTP request to a WebSocket carrying MQTT in binary
// messages and serves it as a connection.
func (s *Server) serveWS(l *listener, w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	// served: serveConn has taken the place in wg (it leaves it when the
	// connection ends, before it returns: a WebSocket does not park).
	served := false
	defer func() {
		if !served {
			s.wg.Done()
		}
	}()
	accepted := time.Now()
	peer := peerAddr(addrString(r.RemoteAddr))
	if gc, ok := r.Context().Value(wsConnKey{}).(*gatedConn); ok && l.proxy {
		// The client's address came in the PROXY header, after accept.
		if !s.admitAddr(l, gc, peer) {
			return
		}
	}
	if err := originAllowed(r, l.origins); err != nil {
		s.metrics.refused.WithLabelValues(refusedOrigin).Inc()
		s.log.Debug("connection refused", "listener", l.id, "remote", r.RemoteAddr, "reason", refusedOrigin, "err", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	wc, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: wsSubprotocols,
		// originAllowed has decided.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept has answered the request
	}
	if wc.Subprotocol() == "" {
		_ = wc.Close(websocket.StatusPolicyViolation, "the mqtt subprotocol is required")
		return
	}
	nc := websocket.NetConn(s.ctx, wc, websocket.MessageBinary)
	if l.cfg.MaxPacketSize > 0 {
		// After NetConn, which lifts the limit: one message may hold a
		// packet of the maximum size (clients send a packet per message).
		wc.SetReadLimit(int64(l.cfg.MaxPacketSize) + 1024)
	}
	served = true
	s.serveConn(l, nc, peer, accepted, r.TLS)
}

// addrString is a net.Addr of a "host:port" string (http.Request.RemoteAddr).
type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		if l.ws != nil {
			_ = l.ws.Close() // closes the listener; upgraded connections are ours
		} else {
			_ = l.ln.Close()
		}
	}
}
