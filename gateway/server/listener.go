package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/coder/websocket"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/session"
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
	// loopback: bound to a loopback address only (anonymous access).
	loopback bool
	// certIdentity is use_identity_as_username: the field of the verified
	// client certificate that is the username ("" for none).
	certIdentity string
	ln           net.Listener
	tls          *tls.Config
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
		cfg:      zoneConfig(s.opts.Config, zone, s.opts.ConnectTimeout),
		loopback: auth.IsLoopback(lc.Bind),
		path:     lc.Path,

		certIdentity: lc.UseIdentityAsUsername,
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
		l.ws = &http.Server{Handler: mux, ReadHeaderTimeout: s.opts.ConnectTimeout}
	}
	return l, nil
}

// loadTLS builds the server TLS configuration of a tls or wss listener.
func loadTLS(lc config.Listener) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(lc.CertFile, lc.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if lc.CACertFile != "" {
		pem, err := os.ReadFile(lc.CACertFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", lc.CACertFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if lc.VerifyPeer {
		if cfg.ClientCAs == nil {
			return nil, errors.New("verify_peer needs cacertfile")
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// serveListener accepts until the listener is closed.
func (s *Server) serveListener(l *listener) {
	if l.ws != nil {
		ln := l.ln
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
			time.Sleep(delay)
			continue
		}
		delay = 0
		if l.tls != nil {
			// The handshake runs on the first read, bounded by the
			// connect timeout.
			nc = tls.Server(nc, l.tls)
		}
		if !s.enter() {
			_ = nc.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			s.serveConn(l, nc, peer{addr: nc.RemoteAddr().String()})
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
	defer s.wg.Done()
	wc, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: wsSubprotocols,
		// MQTT authenticates in CONNECT, not with cookies, so any origin
		// may connect (as browsers on other origins need to).
		OriginPatterns: []string{"*"},
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
	s.serveConn(l, nc, peer{addr: r.RemoteAddr, tls: r.TLS})
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		if l.ws != nil {
			_ = l.ws.Close() // closes the listener; upgraded connections are ours
		} else {
			_ = l.ln.Close()
		}
	}
}
