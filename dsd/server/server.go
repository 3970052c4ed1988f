package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Options configure a Server.
type Options struct {
	// GRPCListen and HTTPListen are listen addresses ("127.0.0.1:0" picks a free port).
	GRPCListen string
	HTTPListen string
	// MaxRecvMsgSize bounds one gRPC request (mqtt.max_packet_size + 64 KiB).
	MaxRecvMsgSize int
	// UnsafePlaintextListen allows non-loopback addresses without TLS.
	UnsafePlaintextListen bool
	// TLS, when set, secures both listeners (see LoadTLS); with client
	// verification on, callers get the role Roles maps their certificate's
	// Common Name to, or DefaultRole.
	TLS         *tls.Config
	Roles       map[string]Role
	DefaultRole Role
	Logger      *slog.Logger
	// GatewayLink configures the GatewayLink service (durable_sessions.*).
	GatewayLink GatewayLinkOptions
}

// Server serves dsd's gRPC API and HTTP endpoints for one storage.DB.
type Server struct {
	opts     Options
	grpc     *grpc.Server
	http     *http.Server
	grpcLis  net.Listener
	httpLis  net.Listener
	shutdown chan struct{}
	link     *gatewayLinkService
}

// Listen binds both listeners; Serve then serves them.
func Listen(db *storage.DB, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, addr := range []string{opts.GRPCListen, opts.HTTPListen} {
		if err := checkLoopback(addr, opts.UnsafePlaintextListen || opts.TLS != nil); err != nil {
			return nil, err
		}
	}
	if opts.DefaultRole == "" {
		opts.DefaultRole = RoleService
	}
	if opts.UnsafePlaintextListen && opts.TLS == nil {
		opts.Logger.Warn("unsafe_plaintext_listen is on: dsd's API may be reachable without TLS from other machines")
	}
	s := &Server{opts: opts, shutdown: make(chan struct{})}
	auth := &authorizer{mutual: opts.TLS != nil && opts.TLS.ClientAuth == tls.RequireAndVerifyClientCert, roles: opts.Roles, defaultRole: opts.DefaultRole}
	gopts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(auth.unary), grpc.ChainStreamInterceptor(auth.stream)}
	if opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	if opts.MaxRecvMsgSize > 0 {
		gopts = append(gopts, grpc.MaxRecvMsgSize(opts.MaxRecvMsgSize))
	}
	s.link = newGatewayLinkService(db, opts.GatewayLink, opts.Logger, s.shutdown)
	gopts = append(gopts, grpc.MaxSendMsgSize(s.link.opts.maxSendMsgSize(db)))
	s.grpc = grpc.NewServer(gopts...)
	m := newMetrics(db)
	dsdv1.RegisterStorageServiceServer(s.grpc, &storageService{db: db, metrics: m})
	dsdv1.RegisterAdminServiceServer(s.grpc, &adminService{db: db})
	dsdv1.RegisterRetainedServiceServer(s.grpc, &retainedService{db: db})
	dsdv1.RegisterGatewayLinkServiceServer(s.grpc, s.link)
	dsdv1.RegisterSessionServiceServer(s.grpc, &sessionService{db: db})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := db.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	newRESTAPI(db).register(mux)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	var err error
	if s.grpcLis, err = net.Listen("tcp", opts.GRPCListen); err != nil {
		return nil, fmt.Errorf("dsd: grpc listen: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", opts.HTTPListen); err != nil {
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

// Serve serves until ctx is done, then stops gracefully within shutdownTimeout
// (in-flight calls finish; after the timeout they are cut).
func (s *Server) Serve(ctx context.Context, shutdownTimeout time.Duration) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("dsd: grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("dsd: http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		s.link.runLeases(gctx) // gateway leases (lease.go)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.stop(shutdownTimeout)
		return nil
	})
	return g.Wait()
}

func (s *Server) stop(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	close(s.shutdown) // ends gateway links, which GracefulStop would wait for
	defer s.link.wait()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
	}
}

// checkLoopback refuses a non-loopback address unless plaintext is allowed.
// TLS listeners (a later issue) lift the restriction.
func checkLoopback(addr string, allowPlaintext bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dsd: listen address %q: %w", addr, err)
	}
	if allowPlaintext || host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("dsd: refusing to listen on %q without TLS: bind a loopback address or set unsafe_plaintext_listen = true", addr)
	}
	return nil
}
