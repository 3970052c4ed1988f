package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stratamq/strata/internal/childproc"
)

// startTimeout bounds the wait for a child's ready line or port.
const startTimeout = 60 * time.Second

// strataConf is the configuration fleetbench gives dsd and the gateway:
// the defaults, but for the admission limits a fleet from a few loopback
// addresses meets at once (docs/security.md): the per-address connection
// cap (gateway.max_connections_per_address, default 10,000) and the
// connection rate (mqtt.max_conn_rate, default 1000/s), and dsd's live
// entries per gateway link (durable_sessions.max_link_entries, default
// 200,000): an idle session with one subscription holds a Watch entry per
// shard (16 by default) and Read entries for the streams it follows, so the
// default admits about 12,500 such sessions per gateway; past it dsd
// refuses the entries (0x97) and the gateway closes the sessions.
func strataConf(sessions int) string {
	return fmt.Sprintf(`[gateway]
max_connections = 0
max_connections_per_address = 0

[durable_sessions]
max_link_entries = %d

[mqtt]
max_conn_rate = "1000000/s"
`, max(500000, entriesPerSession*sessions))
}

// entriesPerSession bounds the link entries of one idle session: one Watch
// (over every shard) and a few Reads.
const entriesPerSession = 1 + 7

// strata is a dsd and a gateway started by fleetbench.
type strata struct {
	dir      string
	bin      string
	conf     string
	dsd      *childproc.Proc
	gateway  *childproc.Proc
	grpcAddr string
	mqttAddr string
	httpAddr string // the gateway's
	dsdHTTP  string
	pprof    bool
}

// startStrata starts dsd and a gateway; pprof and dsdPprof start them
// with --pprof.
func startStrata(ctx context.Context, bin, dir string, sessions int, pprof, dsdPprof bool) (*strata, error) {
	s := &strata{dir: dir, bin: bin, conf: filepath.Join(dir, "strata.toml"), pprof: pprof}
	if err := os.WriteFile(s.conf, []byte(strataConf(sessions)), 0o644); err != nil {
		return nil, err
	}
	args := []string{"--config", s.conf, "--data-dir", filepath.Join(dir, "dsd-data"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}
	if dsdPprof {
		args = append(args, "--pprof")
	}
	d, line, err := childproc.Start(ctx, "dsd", filepath.Join(dir, "dsd.log"), childproc.DSDReady, startTimeout, filepath.Join(bin, "dsd"), args...)
	s.dsd = d
	if err != nil {
		return s, err
	}
	if s.grpcAddr, err = childproc.Attr(childproc.GRPCAttr, line); err != nil {
		return s, fmt.Errorf("dsd: %w", err)
	}
	if s.dsdHTTP, err = childproc.Attr(childproc.HTTPAttr, line); err != nil {
		return s, fmt.Errorf("dsd: %w", err)
	}
	return s, s.startGateway(ctx, "127.0.0.1:0", 1)
}

// startGateway starts the gateway (again); its log is gateway-<n>.log.
func (s *strata) startGateway(ctx context.Context, mqttListen string, n int) error {
	args := []string{"--config", s.conf, "--dsd", s.grpcAddr, "--mqtt-listen", mqttListen, "--http-listen", "127.0.0.1:0"}
	if s.pprof {
		args = append(args, "--pprof")
	}
	g, line, err := childproc.Start(ctx, "gateway", filepath.Join(s.dir, fmt.Sprintf("gateway-%d.log", n)), childproc.GatewayReady, startTimeout, filepath.Join(s.bin, "gateway"), args...)
	s.gateway = g
	if err != nil {
		return err
	}
	mqtt, err1 := childproc.Attr(childproc.TCPAttr, line)
	http, err2 := childproc.Attr(childproc.HTTPAttr, line)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.mqttAddr, s.httpAddr = mqtt, http
	return nil
}

func (s *strata) stop() {
	if s.gateway != nil {
		_ = s.gateway.Stop(30 * time.Second) // a killed gateway (the SIGKILL round) has exited: nothing to report
	}
	if s.dsd != nil {
		_ = s.dsd.Stop(30 * time.Second)
	}
}

// startMosquitto runs mosquitto on a free loopback port, without the
// per-client connection limit a fleet meets.
func startMosquitto(ctx context.Context, bin, dir string) (*childproc.Proc, string, error) {
	return childproc.StartMosquitto(ctx, bin, dir, filepath.Join(dir, "mosquitto.log"), startTimeout,
		"max_connections -1", "log_type error", "log_type warning")
}
