package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/session"
	"github.com/stratamq/strata/internal/opshttp"
)

// Options configure a Server. Config is required; the rest have defaults.
type Options struct {
	// Config is the effective configuration: listeners, zones, mqtt.* and
	// gateway.http_listen.
	Config config.Config
	// Backend opens and ends sessions (the gateway program: dsd's, package
	// dsdbackend). Nil: an in-memory one (session.MemBackend) whose
	// takeovers kick through Server.Kick.
	Backend session.Backend
	// Storage stores what clients publish (the gateway program: dsd's,
	// dsdbackend.Storage). Nil: Backend when it is a session.Storage (the
	// in-memory one is), else PUBLISH cannot be stored and closes the
	// connection.
	Storage session.Storage
	// Delivery carries subscriptions and delivery to dsd (the gateway
	// program: dsdbackend.Delivery). Nil: new subscriptions are refused
	// (SUBACK 0x80) and nothing is delivered, for tests of the connection
	// layer only.
	Delivery Delivery
	// Authenticator checks CONNECT credentials; nil admits everyone.
	Authenticator *auth.Authenticator
	// ACL decides PUBLISH and SUBSCRIBE; nil (or no rules) allows all.
	ACL *auth.ACL
	// Admission limits the rate of accepted connections per zone
	// (mqtt.max_conn_rate, taken at accept); nil: no limit.
	Admission *auth.Admission
	// Ready, when set, is consulted by /readyz besides the server's own
	// state (for example the link to dsd).
	Ready func() error
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Name names the gateway in its $SYS topics ($SYS/brokers/{Name}/...;
	// the gateway program passes its --gateway-id). Default: the host name.
	Name string

	// ConnectTimeout closes a connection that sends no CONNECT in time
	// from its accept (PROXY header and TLS handshake included). Default
	// mqtt.connect_timeout, else 10s.
	ConnectTimeout time.Duration
	// WriteTimeout bounds each write to a client. Default 10s.
	WriteTimeout time.Duration
	// BackendTimeout bounds admission, authentication and each session
	// backend call. Default 10s.
	BackendTimeout time.Duration
	// OutboundQueue is how many packets may wait for a client; a client
	// that lets more pile up is disconnected. Default 1024.
	OutboundQueue int
	// HTTP bounds the requests of the HTTP endpoint (gateway.http_listen).
	HTTP HTTPTimeouts
	// Pprof serves net/http/pprof's /debug/pprof/ on the HTTP endpoint
	// (heap and goroutine profiles of a live gateway, for tools/fleetbench
	// --heapprofile). Default false: profiles show client ids and topics.
	Pprof bool

	// hooks are test hooks (fault injection); nil outside tests.
	hooks *testHooks
}

// HTTPTimeouts bound the HTTP endpoint's connections, so a slow or idle
// client cannot hold one forever (net/http.Server's fields of the same
// names).
type HTTPTimeouts struct {
	// ReadHeaderTimeout bounds reading a request's header. Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request. Default 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (a /metrics scrape). Default 30s.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long. Default 60s.
	IdleTimeout time.Duration
}

// EnsureDefaults fills every unset field with its default.
func (h *HTTPTimeouts) EnsureDefaults() {
	if h.ReadHeaderTimeout == 0 {
		h.ReadHeaderTimeout = 5 * time.Second
	}
	if h.ReadTimeout == 0 {
		h.ReadTimeout = 10 * time.Second
	}
	if h.WriteTimeout == 0 {
		h.WriteTimeout = 30 * time.Second
	}
	if h.IdleTimeout == 0 {
		h.IdleTimeout = 60 * time.Second
	}
}

// Validate reports every invalid field, joined into one error. Call it
// after EnsureDefaults.
func (h HTTPTimeouts) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"ReadHeaderTimeout", h.ReadHeaderTimeout}, {"ReadTimeout", h.ReadTimeout}, {"WriteTimeout", h.WriteTimeout}, {"IdleTimeout", h.IdleTimeout}} {
		if f.d <= 0 {
			errs = append(errs, fmt.Errorf("gateway: options: HTTP.%s %v <= 0", f.name, f.d))
		}
	}
	return errors.Join(errs...)
}

// testHooks inject faults in tests.
type testHooks struct {
	// teardown runs in finish before the final commit.
	teardown func()
	// parkAfter, when set, replaces the idle time after which a
	// connection parks.
	parkAfter time.Duration
}

// DefaultBackendTimeout is Options.BackendTimeout's default.
const DefaultBackendTimeout = 10 * time.Second

// EnsureDefaults fills every unset field with its default.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Name == "" {
		o.Name, _ = os.Hostname()
	}
	if o.Name == "" {
		o.Name = "gateway"
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = o.Config.MQTT.ConnectTimeout.Std()
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	o.HTTP.EnsureDefaults()
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.BackendTimeout == 0 {
		o.BackendTimeout = DefaultBackendTimeout
	}
	if o.OutboundQueue == 0 {
		o.OutboundQueue = 1024
	}
}

// Validate reports every invalid field, joined into one error. Call it
// after EnsureDefaults. The Config itself is config.Config.Validate's.
func (o Options) Validate() error {
	var errs []error
	if o.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("gateway: options: ConnectTimeout %v <= 0", o.ConnectTimeout))
	}
	if o.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("gateway: options: WriteTimeout %v <= 0", o.WriteTimeout))
	}
	if o.BackendTimeout <= 0 {
		errs = append(errs, fmt.Errorf("gateway: options: BackendTimeout %v <= 0", o.BackendTimeout))
	}
	if o.OutboundQueue <= 0 {
		errs = append(errs, fmt.Errorf("gateway: options: OutboundQueue %d <= 0", o.OutboundQueue))
	}
	errs = append(errs, o.HTTP.Validate())
	return errors.Join(errs...)
}

// Server is a running gateway: its MQTT listeners, their connections and
// the HTTP endpoint.
type Server struct {
	opts      Options
	log       *slog.Logger
	metrics   *metrics
	listeners []*listener
	httpLn    net.Listener
	httpSrv   *http.Server
	httpDone  chan struct{}
	ready     atomic.Bool
	// inflight is the sum of the connections' QoS 1 and 2 deliveries
	// awaiting acknowledgement.
	inflight atomic.Int64
	// gate counts connections against gateway.max_connections and
	// gateway.max_connections_per_address.
	gate *gate
	// inboundLimit is mqtt.max_inbound_bytes (conn_budget.go); 0: none.
	inboundLimit int
	// sys publishes the $SYS topics; nil when gateway.sys_interval is 0.
	sys *sysTopics

	// ctx is cancelled by Close (not by a graceful Shutdown) and bounds
	// backend calls and WebSocket connections.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts accept loops, WebSocket handlers and connections (a
	// connection from its accept to its end, whether it runs or is
	// parked).
	wg sync.WaitGroup
	// poller holds the parked connections (conn_park.go); nil where
	// connections do not park.
	poller     *poller
	pollerOnce sync.Once
	// parkAfter is how long a connection waits for a byte before it parks
	// (conn_park.go; tests shorten it).
	parkAfter time.Duration
	// bg is the checkpoint loop, the park loop and the $SYS loop, stopped
	// by closing stopBg.
	bg         sync.WaitGroup
	stopBg     chan struct{}
	stopBgOnce sync.Once

	mu struct {
		sync.Mutex
		closing bool
		conns   map[*conn]struct{}
		// byKey finds a connection by the session it holds, for kicks.
		byKey map[kickKey]*conn
		// pendingKicks are kicks that arrived before their connection
		// registered (its Open returned, its CONNACK not yet sent).
		pendingKicks map[kickKey]struct{}
	}
}

type kickKey struct {
	clientID string
	guard    uint64
}

// Addr is the bound address of one listener.
type Addr struct {
	// Listener is "type.name", such as "tcp.default".
	Listener string
	Type     string
	Addr     string
}

// Listen binds every configured listener and the HTTP endpoint and starts
// serving. Stop it with Shutdown or Close.
func Listen(opts Options) (*Server, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: newMetrics(), httpDone: make(chan struct{}), stopBg: make(chan struct{}),
		gate:         newGate(opts.Config.Gateway.MaxConnections, opts.Config.Gateway.MaxConnectionsPerAddress),
		inboundLimit: int(opts.Config.MQTT.MaxInboundBytes)}
	s.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "strata_gateway_inflight_messages",
		Help: "QoS 1 and 2 messages sent to subscribers and not yet acknowledged.",
	}, func() float64 { return float64(s.inflight.Load()) }))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.conns = make(map[*conn]struct{})
	s.mu.byKey = make(map[kickKey]*conn)
	s.mu.pendingKicks = make(map[kickKey]struct{})
	if s.opts.Backend == nil {
		s.opts.Backend = session.NewMemBackend(s.Kick, opts.Config.MQTT.AllowCrossIdentityTakeover)
	}
	if d, ok := s.opts.Storage.(interface{ IngestDepth() (int, int) }); ok {
		s.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strata_gateway_ingest_queued_stores",
			Help: "Stores waiting to be sent on the ingest stream to dsd.",
		}, func() float64 { q, _ := d.IngestDepth(); return float64(q) }))
		s.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strata_gateway_ingest_unanswered_stores",
			Help: "Stores sent on the ingest stream and not yet answered by dsd (the pipeline's depth).",
		}, func() float64 { _, u := d.IngestDepth(); return float64(u) }))
	}
	if s.opts.Storage == nil {
		if st, ok := s.opts.Backend.(session.Storage); ok {
			s.opts.Storage = st
		} else {
			s.opts.Storage = noStorage{}
		}
	}
	cfg := opts.Config
	if cfg.Gateway.SysInterval > 0 {
		s.sys = newSysTopics(s, opts.Name, time.Now())
		// The values at start, for subscriptions before the first interval.
		s.sys.publish(time.Now())
	}
	for _, typ := range listenerTypes {
		names := make([]string, 0, len(cfg.Listeners[typ]))
		for name := range cfg.Listeners[typ] {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			l, err := s.newListener(typ, name, cfg.Listeners[typ][name])
			if err != nil {
				s.closeListeners()
				s.cancel()
				return nil, err
			}
			s.listeners = append(s.listeners, l)
		}
	}
	if len(s.listeners) == 0 {
		s.cancel()
		return nil, errors.New("gateway: no listeners configured")
	}
	if cfg.Gateway.HTTPListen != "" {
		ln, err := net.Listen("tcp", cfg.Gateway.HTTPListen)
		if err != nil {
			s.closeListeners()
			s.cancel()
			return nil, fmt.Errorf("gateway: http listen %s: %w", cfg.Gateway.HTTPListen, err)
		}
		s.httpLn = ln
		h := opts.HTTP
		s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: h.ReadHeaderTimeout,
			ReadTimeout: h.ReadTimeout, WriteTimeout: h.WriteTimeout, IdleTimeout: h.IdleTimeout}
		go func() {
			defer close(s.httpDone)
			_ = s.httpSrv.Serve(ln)
		}()
	} else {
		close(s.httpDone)
	}
	s.parkAfter = parkAfter
	if h := opts.hooks; h != nil && h.parkAfter > 0 {
		s.parkAfter = h.parkAfter
	}
	if p, err := newPoller(); err != nil {
		s.log.Warn("idle connections keep their goroutines: no epoll set", "err", err)
	} else {
		s.poller = p
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveListener(l)
		}()
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.checkpointLoop()
	}()
	if s.poller != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.parkLoop(s.stopBg)
		}()
	}
	if s.sys != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.sys.loop(cfg.Gateway.SysInterval.Std(), s.stopBg)
		}()
	}
	s.ready.Store(true)
	return s, nil
}

// checkpointInterval is how often connections are asked to commit their
// delivery progress; each commits when its zone's
// durable_sessions.heartbeat_interval has passed.
const checkpointInterval = time.Second

// checkpointLoop asks every connection to checkpoint its session, until
// the server stops.
func (s *Server) checkpointLoop() {
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopBg:
			return
		case <-t.C:
		}
		for _, c := range s.connections() {
			c.checkpoint()
		}
	}
}

// Addrs returns the bound address of every listener, ordered by type (tcp,
// ws, tls, wss) and name.
func (s *Server) Addrs() []Addr {
	out := make([]Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = Addr{Listener: l.id, Type: l.typ, Addr: l.ln.Addr().String()}
	}
	return out
}

// HTTPAddr returns the bound address of the HTTP endpoint, "" without one.
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Kick closes the connection that holds clientID's session with guard: the
// session was taken over or deleted. A kick that arrives before its
// connection registered is kept and applied when it does.
func (s *Server) Kick(clientID string, guard uint64) {
	k := kickKey{clientID, guard}
	s.mu.Lock()
	c := s.mu.byKey[k]
	if c == nil {
		s.mu.pendingKicks[k] = struct{}{}
	}
	s.mu.Unlock()
	if c != nil {
		c.kick()
	}
}

// LeaseLost closes every connection abnormally because the gateway lost
// its lease with dsd (ARCHITECTURE.md section 6): MQTT 5 clients get
// DISCONNECT 0x89, others a close. Listeners stay open; new CONNECTs are
// refused by the backend (0x88 / 0x03) until the gateway registers again.
func (s *Server) LeaseLost() {
	for _, c := range s.connections() {
		c.leaseLost()
	}
}

// connections returns the open connections.
func (s *Server) connections() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*conn, 0, len(s.mu.conns))
	for c := range s.mu.conns {
		conns = append(conns, c)
	}
	return conns
}

// register records that c holds clientID's session with guard.
func (s *Server) register(c *conn, clientID string, guard uint64) {
	k := kickKey{clientID, guard}
	s.mu.Lock()
	s.mu.byKey[k] = c
	_, kicked := s.mu.pendingKicks[k]
	delete(s.mu.pendingKicks, k)
	s.mu.Unlock()
	if kicked {
		c.kick()
	}
}

func (s *Server) unregister(c *conn, clientID string, guard uint64) {
	k := kickKey{clientID, guard}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.byKey[k] == c {
		delete(s.mu.byKey, k)
	}
	delete(s.mu.pendingKicks, k)
}

// enter counts a goroutine in wg unless the server is stopping.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// track adds c to the connections that Shutdown tells to close; false once
// the server is stopping.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closing {
		return false
	}
	s.mu.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.conns, c)
}

// serveConn serves one accepted connection; the caller has entered wg,
// which the connection leaves when it ends. It returns when the connection
// ends or parks (only plain TCP connections park: conn_park.go). peer is
// the client's address (from a PROXY header where the listener takes one);
// accepted starts the connect timeout; wsTLS is a wss connection's TLS
// state.
func (s *Server) serveConn(l *listener, nc net.Conn, peer netip.Addr, accepted time.Time, wsTLS *tls.ConnectionState) {
	c := newConn(s, l, nc, peer, accepted)
	c.wsTLS = wsTLS
	if !s.track(c) {
		_ = nc.Close()
		s.wg.Done()
		return
	}
	s.metrics.accepted.WithLabelValues(l.id).Inc()
	c.serve()
}

// stopping marks the server as stopping and returns its connections.
func (s *Server) stopping() []*conn {
	s.stopBgOnce.Do(func() { close(s.stopBg) })
	s.bg.Wait()
	s.mu.Lock()
	s.mu.closing = true
	s.mu.Unlock()
	return s.connections()
}

// Shutdown stops gracefully: it stops accepting, tells every connection to
// close (MQTT 5 clients get DISCONNECT 0x8B), waits for them to end their
// sessions until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	conns := s.stopping()
	s.closeListeners()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("gateway: shutdown: %w", ctx.Err())
		for _, c := range s.stopping() {
			c.abort()
		}
		s.cancel()
		<-done
	}
	s.cancel()
	s.stopPoller()
	s.stopHTTP()
	return err
}

// Close stops at once: listeners and connections are closed without
// DISCONNECT; sessions are still ended (best effort).
func (s *Server) Close() error {
	s.ready.Store(false)
	conns := s.stopping()
	s.closeListeners()
	for _, c := range conns {
		c.abort()
	}
	s.cancel()
	s.wg.Wait()
	s.stopPoller()
	s.stopHTTP()
	return nil
}

// stopPoller stops the poller once every connection has ended.
func (s *Server) stopPoller() {
	s.pollerOnce.Do(func() {
		if s.poller != nil {
			s.poller.close()
		}
	})
}

func (s *Server) stopHTTP() {
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			_ = s.httpSrv.Close()
		}
	}
	<-s.httpDone
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	opshttp.Register(mux, s.metrics.registry, func() error {
		if !s.ready.Load() {
			return errors.New("stopping")
		}
		if s.opts.Ready != nil {
			return s.opts.Ready()
		}
		return nil
	})
	if s.opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return mux
}

// noStorage refuses every Store: a Backend without a Storage.
type noStorage struct{}

func (noStorage) Submit(_ session.StoreRequest, done func(error)) {
	go done(fmt.Errorf("gateway: no storage configured: %w", session.ErrUnavailable))
}

func (noStorage) Release(context.Context, session.ReleaseRequest) (bool, error) {
	return false, fmt.Errorf("gateway: no storage configured: %w", session.ErrUnavailable)
}
