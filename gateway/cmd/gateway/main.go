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
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/server"
)

// shutdownGrace bounds a graceful stop.
const shutdownGrace = 10 * time.Second

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	configPath := fs.String("config", "", "TOML config file (default: built-in defaults)")
	dsdAddr := fs.String("dsd", "", "dsd gRPC address (overrides gateway.dsd)")
	mqttListen := fs.String("mqtt-listen", "", "MQTT over TCP address (overrides listeners.tcp.default.bind)")
	wsListen := fs.String("ws-listen", "", "MQTT over WebSocket address (overrides listeners.ws.default.bind)")
	tlsListen := fs.String("tls-listen", "", "MQTT over TLS address (overrides listeners.tls.default.bind)")
	wssListen := fs.String("wss-listen", "", "MQTT over secure WebSocket address (overrides listeners.wss.default.bind)")
	httpListen := fs.String("http-listen", "", "HTTP address for /metrics, /healthz, /readyz (overrides gateway.http_listen)")
	if err := fs.Parse(args); err != nil {
		return err
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
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fmt.Fprintf(os.Stderr, "# gateway effective configuration\n%s", cfg)

	authn, err := auth.New(cfg.Auth)
	if err != nil {
		return err
	}
	acl, err := auth.NewACL(cfg.ACL)
	if err != nil {
		return err
	}
	// The connection is lazy: dsd may start after the gateway.
	// TODO(sessions): open sessions in dsd (SessionService) and take kicks
	// from the GatewayLink; until then sessions live in this gateway
	// (session.MemBackend) and dsd is not called.
	dsd, err := client.Dial(cfg.Gateway.DSD)
	if err != nil {
		return err
	}
	defer dsd.Close()

	srv, err := server.Listen(server.Options{
		Config:        cfg,
		Authenticator: authn,
		ACL:           acl,
		Admission:     auth.NewAdmission(cfg),
		Logger:        log,
	})
	if err != nil {
		return err
	}
	attrs := []any{"dsd", cfg.Gateway.DSD, "http", srv.HTTPAddr()}
	for _, a := range srv.Addrs() {
		attrs = append(attrs, a.Listener, a.Addr)
	}
	log.Info("gateway ready", attrs...)

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
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("connections still open after the grace period were closed", "grace", shutdownGrace)
		err = nil
	}
	log.Info("gateway stopped")
	return err
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
