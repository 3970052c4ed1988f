package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/opshttp"
)

// Options configure a Server. The zero value of every limit takes its
// default (the Default... constants).
type Options struct {
	// GRPCListen and HTTPListen are listen addresses ("127.0.0.1:0" picks a free port).
	GRPCListen string
	HTTPListen string
	// MaxRecvMsgSize bounds one gRPC request. Default: the storage's
	// largest message (mqtt.max_packet_size) + 64 KiB.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds the concurrent calls (unary calls and
	// streams) of one client connection; further calls wait in the client
	// (dsd.max_concurrent_streams). Default 1024.
	MaxConcurrentStreams uint32
	// KeepaliveMinTime is the shortest interval between a client's
	// keepalive pings dsd tolerates; a client pinging more often is sent
	// GOAWAY. Default 10s.
	KeepaliveMinTime time.Duration
	// KeepaliveTime and KeepaliveTimeout: dsd pings a connection idle for
	// KeepaliveTime and closes it when the ping is not answered within
	// KeepaliveTimeout. Defaults 30s and 10s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// UnsafePlaintextListen allows non-loopback addresses without mutual
	// TLS: every caller that can connect is then admin (logged at WARN).
	UnsafePlaintextListen bool
	// TLS, when set, secures both listeners (see LoadTLS). With client
	// verification on, callers get the role Roles maps their
	// certificate's Common Name to, or DefaultRole; without it every
	// caller is admin, which Listen allows only on loopback addresses.
	TLS         *tls.Config
	Roles       map[string]Role
	DefaultRole Role
	// AllowCrossIdentityTakeover is dsd's own mqtt.allow_cross_identity_takeover:
	// only when it is set may an OpenSession (that asks for it) take over a
	// session opened by another username. Default false.
	AllowCrossIdentityTakeover bool
	Logger                     *slog.Logger
	// Pprof serves net/http/pprof's /debug/pprof/ on the HTTP listener
	// (dsd --pprof): CPU profiles of a chosen phase of a benchmark, such as
	// a replay. Off by default.
	Pprof bool
	// GatewayLink configures the GatewayLink service (durable_sessions.*).
	GatewayLink GatewayLinkOptions
	// Cluster is the site's metadata group member: SiteService, the
	// cluster part of Info, the REST sites and its metrics come from it.
	// Nil serves a site alone (SiteService then answers UNIMPLEMENTED).
	Cluster *cluster.Cluster
	// SiteDialOptions are how this site dials the others for the shared
	// groups' work across sites (SiteService.Shared): the cluster's
	// DialOptions (TLS between sites).
	SiteDialOptions []grpc.DialOption
}

// Defaults of Options.
const (
	DefaultMaxConcurrentStreams = 1024
	DefaultKeepaliveMinTime     = 10 * time.Second
	DefaultKeepaliveTime        = 30 * time.Second
	DefaultKeepaliveTimeout     = 10 * time.Second
	// recvSlackBytes is what a request adds to its largest message:
	// topic, properties and protobuf framing.
	recvSlackBytes = 64 << 10
	// HTTP server timeouts (metrics, health, REST: small GETs).
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpIdleTimeout       = 120 * time.Second
)

// EnsureDefaults fills every unset field with its default, GatewayLink's
// included. MaxRecvMsgSize stays 0 when unset: its default depends on the
// storage, and Listen resolves it (maxRecvMsgSize).
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DefaultRole == "" {
		o.DefaultRole = RoleService
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.KeepaliveMinTime == 0 {
		o.KeepaliveMinTime = DefaultKeepaliveMinTime
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = DefaultKeepaliveTime
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	o.GatewayLink.EnsureDefaults()
}

// Validate reports every invalid field, joined into one error. Call it
// after EnsureDefaults.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("dsd: options: "+format, args...))
	}
	if o.MaxRecvMsgSize < 0 {
		bad("MaxRecvMsgSize %d < 0", o.MaxRecvMsgSize)
	}
	if o.KeepaliveMinTime <= 0 {
		bad("KeepaliveMinTime %v <= 0", o.KeepaliveMinTime)
	}
	if o.KeepaliveTime <= 0 {
		bad("KeepaliveTime %v <= 0", o.KeepaliveTime)
	}
	if o.KeepaliveTimeout <= 0 {
		bad("KeepaliveTimeout %v <= 0", o.KeepaliveTimeout)
	}
	errs = append(errs, o.GatewayLink.Validate())
	return errors.Join(errs...)
}

// maxRecvMsgSize is MaxRecvMsgSize, else its default: the storage's
// largest message plus a request's slack.
func (o Options) maxRecvMsgSize(db *storage.DB) int {
	if o.MaxRecvMsgSize > 0 {
		return o.MaxRecvMsgSize
	}
	return db.Options().MaxMessageBytes + recvSlackBytes
}

// Server serves dsd's gRPC API and HTTP endpoints for one storage.DB.
type Server struct {
	opts    Options
	grpc    *grpc.Server
	http    *http.Server
	grpcLis net.Listener
	httpLis net.Listener
	link    *gatewayLinkService
	// remote reaches the other sites for shared groups (nil without a
	// cluster).
	remote *sharedRemote
	// shutdown is closed when the stop begins; stopped when it is over.
	shutdown, stopped chan struct{}
	stopOnce          sync.Once
	// leases is the context of the lease loop, cancelled by the stop.
	leases       context.Context
	cancelLeases context.CancelFunc
}

// Listen binds both listeners; Serve then serves them. A listener whose
// address does not resolve to a loopback address needs mutual TLS (or
// UnsafePlaintextListen).
func Listen(db *storage.DB, opts Options) (*Server, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.MaxRecvMsgSize = opts.maxRecvMsgSize(db)
	mutual := mutualTLS(opts.TLS)
	var binds [2]string
	for i, addr := range []string{opts.GRPCListen, opts.HTTPListen} {
		bind, loopback, err := listenPolicy(addr, mutual, opts.UnsafePlaintextListen)
		if err != nil {
			return nil, err
		}
		binds[i] = bind
		if !loopback && !mutual {
			opts.Logger.Warn("UNSAFE: unsafe_plaintext_listen is on: dsd listens on a non-loopback address without mutual TLS, and every caller that can reach it is admin (may drop generations, delete sessions and retained messages)", "addr", addr, "tls", opts.TLS != nil)
		}
	}
	s := &Server{opts: opts, shutdown: make(chan struct{}), stopped: make(chan struct{})}
	s.leases, s.cancelLeases = context.WithCancel(context.Background())
	m := newMetrics(db)
	if opts.Cluster != nil {
		registerClusterMetrics(m.registry, opts.Cluster)
	}
	b := &boundary{log: opts.Logger, metrics: m}
	auth := newAuthorizer(mutual, opts.Roles, opts.DefaultRole, db)
	gopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(b.unary, auth.unary),
		grpc.ChainStreamInterceptor(b.stream, auth.stream),
		grpc.MaxRecvMsgSize(opts.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: opts.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: opts.KeepaliveTime, Timeout: opts.KeepaliveTimeout}),
	}
	if opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.link = newGatewayLinkService(db, opts.GatewayLink, opts.Logger, s.shutdown, m)
	if c := opts.Cluster; c != nil {
		s.link.leases.replicated = func() bool { return replicatesAny(c) }
	}
	gopts = append(gopts, grpc.MaxSendMsgSize(s.link.opts.maxSendMsgSize(db)))
	s.grpc = grpc.NewServer(gopts...)
	dsdv1.RegisterStorageServiceServer(s.grpc, &storageService{db: db, metrics: m, cluster: opts.Cluster})
	site := &siteService{cluster: opts.Cluster}
	if c := opts.Cluster; c != nil {
		s.remote = newSharedRemote(c, opts.SiteDialOptions)
		db.SetSharedRemote(s.remote)
		site.db, site.live = db, s.link.groups.live
	}
	dsdv1.RegisterSiteServiceServer(s.grpc, site)
	dsdv1.RegisterAdminServiceServer(s.grpc, &adminService{db: db, cluster: opts.Cluster})
	dsdv1.RegisterRetainedServiceServer(s.grpc, &retainedService{db: db})
	dsdv1.RegisterGatewayLinkServiceServer(s.grpc, s.link)
	dsdv1.RegisterSessionServiceServer(s.grpc, &sessionService{db: db, allowCrossIdentityTakeover: opts.AllowCrossIdentityTakeover})

	mux := http.NewServeMux()
	opshttp.Register(mux, m.registry, db.Ready)
	newRESTAPI(db, opts.Cluster, auth).register(mux)
	if opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout, IdleTimeout: httpIdleTimeout,
		ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)}

	var err error
	if s.grpcLis, err = net.Listen("tcp", binds[0]); err != nil {
		return nil, fmt.Errorf("dsd: grpc listen: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", binds[1]); err != nil {
		s.grpcLis.Close()
		return nil, fmt.Errorf("dsd: http listen: %w", err)
	}
	if opts.TLS != nil {
		s.httpLis = tls.NewListener(s.httpLis, opts.TLS)
	}
	return s, nil
}

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Serve serves the gRPC API, the HTTP endpoints and the gateway leases. It
// returns when Shutdown or Close stopped the server (nil, once they have),
// or when a listener fails (that error, after closing the server). Call it
// once.
func (s *Server) Serve() error {
	var g errgroup.Group
	fail := func(err error) error {
		_ = s.Close()
		return err
	}
	g.Go(func() error {
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fail(fmt.Errorf("dsd: grpc: %w", err))
		}
		return nil
	})
	g.Go(func() error {
		if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fail(fmt.Errorf("dsd: http: %w", err))
		}
		return nil
	})
	g.Go(func() error {
		s.link.runLeases(s.leases) // gateway leases (lease.go)
		return nil
	})
	err := g.Wait()
	<-s.stopped
	return err
}

// Shutdown stops gracefully, in the manner of net/http: it stops accepting,
// ends the gateway links (which would otherwise never end), lets in-flight
// calls finish until ctx is done, then cuts what is left and returns
// ctx's error. A second call, or a call after Close, waits for the first
// stop and returns nil.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.beginStop() {
		<-s.stopped
		return nil
	}
	defer close(s.stopped)
	defer s.link.wait()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.grpc.Stop()
		<-done
	}
	if herr := s.http.Shutdown(ctx); herr != nil {
		_ = s.http.Close()
		err = cmp.Or(err, herr)
	}
	return err
}

// Close stops at once: listeners and every call and stream are closed
// without waiting. Like Shutdown, a later call waits for the first stop.
func (s *Server) Close() error {
	if !s.beginStop() {
		<-s.stopped
		return nil
	}
	defer close(s.stopped)
	defer s.link.wait()
	s.grpc.Stop()
	return s.http.Close()
}

// beginStop starts the one stop of the server: it ends the gateway links
// and the lease loop. It reports false if a stop had begun already.
func (s *Server) beginStop() bool {
	first := false
	s.stopOnce.Do(func() {
		first = true
		close(s.shutdown) // ends gateway links, which GracefulStop would wait for
		s.cancelLeases()
		if s.remote != nil {
			s.remote.close()
		}
	})
	return first
}

// listenPolicy resolves addr and decides whether dsd may listen there. It
// returns the address to bind (the resolved one, so that what is judged is
// what is bound) and whether it is loopback. A loopback address is always
// allowed; another one (including an unspecified address such as 0.0.0.0)
// only with mutual TLS, or with unsafe_plaintext_listen.
func listenPolicy(addr string, mutual, unsafe bool) (bind string, loopback bool, err error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return "", false, fmt.Errorf("dsd: listen address %q: %w", addr, err)
	}
	loopback = ta.IP != nil && ta.IP.IsLoopback()
	if !loopback && !mutual && !unsafe {
		return "", false, fmt.Errorf("dsd: refusing to listen on %q (%s is not a loopback address) without mutual TLS: "+
			"set dsd.tls.certfile, dsd.tls.keyfile and dsd.tls.cacertfile (client certificates), bind a loopback address, "+
			"or set unsafe_plaintext_listen = true (every caller is then admin)", addr, ipText(ta.IP))
	}
	if ta.IP == nil {
		return addr, loopback, nil
	}
	return ta.String(), loopback, nil
}

func ipText(ip net.IP) string {
	if ip == nil {
		return "the unspecified address"
	}
	return ip.String()
}
