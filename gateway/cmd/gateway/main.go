// Command gateway is Strata's MQTT gateway: it accepts MQTT 3.1, 3.1.1 and
// 5.0 clients over TCP, TLS, WebSocket and WSS, and keeps their sessions in
// dsd.
//
//	gateway --config strata.toml --dsd 127.0.0.1:7070 --mqtt-listen 127.0.0.1:1883 \
//	    --ws-listen 127.0.0.1:8083 --tls-listen 127.0.0.1:8883 --http-listen 127.0.0.1:7072
//
// Each --*-listen flag sets the bind address of the listener "default" of
// its type (listeners.tcp.default, .ws., .tls., .wss.), adding it if the
// configuration has none; a tls or wss listener also needs certfile and
// keyfile in the configuration. Port 0 picks a free port; the "gateway
// ready" log line names the bound addresses. The gateway prints its
// effective configuration at start-up, re-reads the password file on
// SIGHUP, and stops gracefully on SIGINT or SIGTERM.
//
// Sessions live in dsd (SessionService); the gateway registers with dsd as
// --gateway-id (default: a random id per start) with a new epoch at each
// registration, keeps its lease on the GatewayLink and closes every MQTT
// connection when it loses it (docs/gateway.md). The MQTT listeners open
// only once the gateway is registered, so a client connecting as soon as the
// port accepts is not refused.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/dsdbackend"
	"github.com/stratamq/strata/gateway/server"
	"github.com/stratamq/strata/internal/buildinfo"
	"github.com/stratamq/strata/internal/logging"
	"github.com/stratamq/strata/internal/profiling"
	"github.com/stratamq/strata/internal/sdnotify"
)

// shutdownGrace bounds a graceful stop.
const shutdownGrace = 10 * time.Second

// firstRegistrationWait is how often the gateway warns while it waits for
// its first registration with dsd at start-up.
const firstRegistrationWait = 5 * time.Second

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	configPath := fs.String("config", "", "TOML config file (default: built-in defaults)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	dsdAddr := fs.String("dsd", "", "dsd gRPC address, or a comma-separated list of sites, any one enough to discover the others (overrides gateway.dsd)")
	mqttListen := fs.String("mqtt-listen", "", "MQTT over TCP address (overrides listeners.tcp.default.bind)")
	wsListen := fs.String("ws-listen", "", "MQTT over WebSocket address (overrides listeners.ws.default.bind)")
	tlsListen := fs.String("tls-listen", "", "MQTT over TLS address (overrides listeners.tls.default.bind)")
	wssListen := fs.String("wss-listen", "", "MQTT over secure WebSocket address (overrides listeners.wss.default.bind)")
	httpListen := fs.String("http-listen", "", "HTTP address for /metrics, /healthz, /readyz (overrides gateway.http_listen)")
	showVersion := buildinfo.VersionFlag(fs)
	gatewayID := fs.String("gateway-id", "", "this gateway's id in dsd (default: the Common Name of gateway.dsd_tls.certfile, else gw- and 16 random hex digits, new at each start)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	pprofHTTP := fs.Bool("pprof", false, "serve /debug/pprof/ (heap, goroutine and CPU profiles) on the HTTP listener; off by default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		buildinfo.Fprint(os.Stdout, "gateway")
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	stopProfile, err := profiling.StartCPU(*cpuProfile)
	if err != nil {
		return err
	}
	defer func() { _ = stopProfile() }()
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *dsdAddr != "" {
		cfg.Gateway.DSD = *dsdAddr
	}
	if *httpListen != "" {
		cfg.Gateway.HTTPListen = *httpListen
	}
	setListener(&cfg, "tcp", *mqttListen)
	setListener(&cfg, "ws", *wsListen)
	setListener(&cfg, "tls", *tlsListen)
	setListener(&cfg, "wss", *wssListen)
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, *logLevel)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "# gateway effective configuration\n%s", cfg)

	authn, err := auth.New(cfg.Auth)
	if err != nil {
		return err
	}
	acl, err := auth.NewACL(cfg.ACL)
	if err != nil {
		return err
	}
	dialOpts, certName, err := dsdDialOptions(cfg.Gateway.DSDTLS)
	if err != nil {
		return err
	}
	switch {
	case *gatewayID == "" && certName != "":
		*gatewayID = certName // dsd binds a gateway certificate to its name
	case *gatewayID == "":
		*gatewayID = randomGatewayID()
	}
	if !cfg.Gateway.DSDTLS.Enable {
		log.Info("dialing dsd in plaintext (gateway.dsd_tls.enable = false); use TLS when dsd is on another host", "dsd", cfg.Gateway.DSD)
	}
	addrs, err := dsdbackend.ParseAddrs(cfg.Gateway.DSD)
	if err != nil {
		return err
	}
	// The connections are lazy: dsd may start after the gateway, which
	// opens its MQTT listeners once registered. Any one site is enough:
	// the pool learns the others and each shard's leader from it.
	pool, err := dsdbackend.NewPool(addrs, log, dialOpts...)
	if err != nil {
		return err
	}
	defer pool.Close()
	interval := cfg.DurableSessions.GatewayHeartbeatInterval.Std()
	router := dsdbackend.NewRoutedRouter(pool)
	leaseOpts := dsdbackend.LeaseOptions{Pool: pool, GatewayID: *gatewayID, Interval: interval, Router: router, Logger: log}
	backendOpts := dsdbackend.Options{
		AllowCrossIdentityTakeover: cfg.MQTT.AllowCrossIdentityTakeover,
		CallTimeout:                2 * interval,
	}
	ingestOpts := dsdbackend.IngestOptions{Timeout: server.DefaultBackendTimeout, Logger: log}
	// The constructors refuse invalid options as a bug: refuse them here
	// as an error first.
	leaseOpts.EnsureDefaults()
	backendOpts.EnsureDefaults()
	ingestOpts.EnsureDefaults()
	if err := errors.Join(leaseOpts.Validate(), backendOpts.Validate(), ingestOpts.Validate()); err != nil {
		return err
	}
	pool.Start()
	lease := dsdbackend.NewLease(leaseOpts)
	defer lease.Close()
	backend := dsdbackend.NewRouted(pool, lease, backendOpts)
	storage := dsdbackend.NewRoutedStorage(pool, lease, backendOpts, ingestOpts)
	defer storage.Close()
	delivery := dsdbackend.NewRoutedDelivery(pool, lease, router, backendOpts)

	// The lease starts before the listeners: a client that connects as
	// soon as the port accepts is not refused for want of a registration
	// (0x88). Until the server exists there is no connection for a kick or
	// a lease loss to close.
	var srvp atomic.Pointer[server.Server]
	lease.Start(dsdbackend.Handlers{
		Kick: func(clientID string, guard uint64) {
			if s := srvp.Load(); s != nil {
				s.Kick(clientID, guard)
			}
		},
		Lost: func() {
			if s := srvp.Load(); s != nil {
				s.LeaseLost()
			}
		},
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if !waitRegistered(lease, sigs, log, cfg.Gateway.DSD) {
		log.Info("gateway stopped before it registered with dsd")
		return nil
	}

	srv, err := server.Listen(server.Options{
		Config:        cfg,
		Backend:       backend,
		Storage:       storage,
		Delivery:      delivery,
		Authenticator: authn,
		ACL:           acl,
		Admission:     auth.NewAdmission(cfg),
		Ready:         lease.Ready,
		Logger:        log,
		Name:          *gatewayID,
		Pprof:         *pprofHTTP,
	})
	if err != nil {
		return err
	}
	srvp.Store(srv)
	attrs := []any{"dsd", cfg.Gateway.DSD, "gateway_id", *gatewayID, "epoch", lease.Epoch(), "http", srv.HTTPAddr()}
	for _, a := range srv.Addrs() {
		attrs = append(attrs, a.Listener, a.Addr)
		log.Info("listening", "listener", a.Listener, "addr", a.Addr)
	}
	log.Info("gateway ready", attrs...)
	if err := sdnotify.Ready(); err != nil {
		log.Warn("cannot tell systemd that the gateway is ready", "err", err)
	}

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if err := authn.Reload(); err != nil {
				log.Warn("password file reload failed; the previous users stay in force", "err", err)
			} else {
				log.Info("password file reloaded", "users", authn.Stats().Users)
			}
			continue
		}
		break
	}
	log.Info("gateway stopping")
	_ = sdnotify.Stopping()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("connections still open after the grace period were closed", "grace", shutdownGrace)
		err = nil
	}
	_ = lease.Close()
	log.Info("gateway stopped")
	return err
}

// dsdDialOptions are the options of the connection to dsd: TLS (with a
// client certificate when one is set) when gateway.dsd_tls.enable, else
// plaintext (the client's default). certName is the client certificate's
// Common Name, "" without one.
func dsdDialOptions(t config.GatewayDSDTLS) (opts []grpc.DialOption, certName string, err error) {
	if !t.Enable {
		return nil, "", nil
	}
	opt, err := client.WithTLS(client.TLSFiles{CAFile: t.CACertFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName})
	if err != nil {
		return nil, "", fmt.Errorf("gateway.dsd_tls: %w", err)
	}
	if t.CertFile != "" {
		if certName, err = client.CertName(t.CertFile, t.KeyFile); err != nil {
			return nil, "", fmt.Errorf("gateway.dsd_tls: %w", err)
		}
	}
	return []grpc.DialOption{opt}, certName, nil
}

// waitRegistered waits for the first registration with dsd, logging a
// warning each firstRegistrationWait it takes; false if SIGINT or SIGTERM
// came first. SIGHUP reloads nothing yet (no listener is open).
func waitRegistered(lease *dsdbackend.Lease, sigs <-chan os.Signal, log *slog.Logger, dsd string) bool {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), firstRegistrationWait)
		done := make(chan error, 1)
		go func() { done <- lease.WaitRegistered(ctx) }()
		select {
		case err := <-done:
			cancel()
			if err == nil {
				return true
			}
			log.Warn("not registered with dsd yet; the MQTT listeners open once it answers", "dsd", dsd)
		case sig := <-sigs:
			cancel()
			<-done
			if sig != syscall.SIGHUP {
				return false
			}
		}
	}
}

// randomGatewayID returns a new gateway id: "gw-" and 16 random hex digits.
// It lives as long as the process; dsd tells a restarted gateway apart by
// its epoch anyway, which grows (unix nanoseconds).
func randomGatewayID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "gw-" + hex.EncodeToString(b[:])
}

// setListener points the listener "default" of typ at addr, adding it (in
// zone "default") when the configuration has none.
func setListener(cfg *config.Config, typ, addr string) {
	if addr == "" {
		return
	}
	if cfg.Listeners == nil {
		cfg.Listeners = map[string]map[string]config.Listener{}
	}
	ls := cfg.Listeners[typ]
	if ls == nil {
		ls = map[string]config.Listener{}
		cfg.Listeners[typ] = ls
	}
	l := ls["default"]
	l.Bind = addr
	if l.Zone == "" {
		l.Zone = "default"
	}
	ls["default"] = l
}
