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
// connection when it loses it (docs/gateway.md).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/dsdbackend"
	"github.com/stratamq/strata/gateway/server"
	"github.com/stratamq/strata/internal/buildinfo"
	"github.com/stratamq/strata/internal/logging"
	"github.com/stratamq/strata/internal/sdnotify"
)

// shutdownGrace bounds a graceful stop.
const shutdownGrace = 10 * time.Second

// firstRegistrationWait bounds the wait for dsd at start-up.
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
	dsdAddr := fs.String("dsd", "", "dsd gRPC address (overrides gateway.dsd)")
	mqttListen := fs.String("mqtt-listen", "", "MQTT over TCP address (overrides listeners.tcp.default.bind)")
	wsListen := fs.String("ws-listen", "", "MQTT over WebSocket address (overrides listeners.ws.default.bind)")
	tlsListen := fs.String("tls-listen", "", "MQTT over TLS address (overrides listeners.tls.default.bind)")
	wssListen := fs.String("wss-listen", "", "MQTT over secure WebSocket address (overrides listeners.wss.default.bind)")
	httpListen := fs.String("http-listen", "", "HTTP address for /metrics, /healthz, /readyz (overrides gateway.http_listen)")
	showVersion := buildinfo.VersionFlag(fs)
	gatewayID := fs.String("gateway-id", "", "this gateway's id in dsd (default: gw- and 16 random hex digits, new at each start)")
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
	if *gatewayID == "" {
		*gatewayID = randomGatewayID()
	}
	// The connection is lazy: dsd may start after the gateway; until the
	// gateway registers with it, CONNECTs are refused with 0x88 / 0x03.
	dsd, err := client.Dial(cfg.Gateway.DSD)
	if err != nil {
		return err
	}
	defer dsd.Close()
	interval := cfg.DurableSessions.GatewayHeartbeatInterval.Std()
	router := dsdbackend.NewRouter()
	lease := dsdbackend.NewLease(dsdbackend.LeaseOptions{Client: dsd, GatewayID: *gatewayID, Interval: interval, Router: router, Logger: log})
	defer lease.Close()
	backendOpts := dsdbackend.Options{
		AllowCrossIdentityTakeover: cfg.MQTT.AllowCrossIdentityTakeover,
		CallTimeout:                2 * interval,
	}
	backend := dsdbackend.New(dsd.Sessions(), lease, backendOpts)
	storage := dsdbackend.NewStorage(dsd.Storage, dsd.Sessions(), lease, backendOpts)
	delivery := dsdbackend.NewDelivery(dsd, lease, router, backendOpts)

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
	})
	if err != nil {
		return err
	}
	lease.Start(dsdbackend.Handlers{Kick: srv.Kick, Lost: srv.LeaseLost})
	// Wait a little for the first registration so that clients connecting
	// right after "gateway ready" are not refused; a dsd that is down
	// does not stop the gateway from starting.
	wctx, wcancel := context.WithTimeout(context.Background(), firstRegistrationWait)
	if err := lease.WaitRegistered(wctx); err != nil {
		log.Warn("not registered with dsd yet; CONNECTs are refused (0x88) until it answers", "dsd", cfg.Gateway.DSD)
	}
	wcancel()
	attrs := []any{"dsd", cfg.Gateway.DSD, "gateway_id", *gatewayID, "epoch", lease.Epoch(), "http", srv.HTTPAddr()}
	for _, a := range srv.Addrs() {
		attrs = append(attrs, a.Listener, a.Addr)
	}
	log.Info("gateway ready", attrs...)
	if err := sdnotify.Ready(); err != nil {
		log.Warn("cannot tell systemd that the gateway is ready", "err", err)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
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
