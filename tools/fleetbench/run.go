package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Result is one run's summary.
type Result struct {
	Sessions int    `json:"sessions"`
	Sources  int    `json:"sources"`
	Dials    int    `json:"dials"`
	NoFile   uint64 `json:"rlimit_nofile"`
	// Systems: Strata (dsd + gateway), then mosquitto when asked for.
	Systems   []*SystemResult  `json:"systems"`
	Reconnect *ReconnectResult `json:"reconnect,omitempty"`
	Error     string           `json:"error,omitempty"`
}

// SystemResult is what the fleet cost one MQTT server.
type SystemResult struct {
	Name string `json:"name"`
	// ConnectSeconds is the time to connect and subscribe every device;
	// ConnectRate is sessions per second.
	ConnectSeconds float64 `json:"connect_s"`
	ConnectRate    float64 `json:"connect_per_s"`
	// Retries are CONNECTs refused for now and tried again.
	Retries int64 `json:"retries"`
	// Procs has the RSS of each process before and after.
	Procs []ProcRSS `json:"procs"`
	// Go runtime figures of the gateway from its /metrics, per session.
	GatewayHeapPerSession  float64 `json:"gateway_heap_inuse_b_per_session,omitempty"`
	GatewayStackPerSession float64 `json:"gateway_stack_inuse_b_per_session,omitempty"`
	GatewayGoroutines      float64 `json:"gateway_goroutines_per_session,omitempty"`
	// GatewayConnections is what the gateway holds once the fleet is
	// idle; GatewayClosed, the connections it closed meanwhile.
	GatewayConnections float64 `json:"gateway_connections,omitempty"`
	GatewayClosed      float64 `json:"gateway_closed,omitempty"`
}

// ProcRSS is one process's resident memory before the fleet connected and
// once it was idle.
type ProcRSS struct {
	Name       string  `json:"name"`
	BeforeKiB  int64   `json:"before_kib"`
	AfterKiB   int64   `json:"after_kib"`
	PerSession float64 `json:"kib_per_session"`
}

// ReconnectResult is the round after the gateway's SIGKILL.
type ReconnectResult struct {
	// RestartSeconds: SIGKILL to the new gateway's ready line.
	RestartSeconds float64 `json:"restart_s"`
	// PublishSeconds: one QoS 1 message to each device's topic, acked.
	PublishSeconds float64 `json:"publish_s"`
	// ReconnectSeconds: start of the round to the last CONNACK;
	// DeliverSeconds: to the last message received.
	ReconnectSeconds float64 `json:"reconnect_s"`
	DeliverSeconds   float64 `json:"deliver_s"`
	Connected        int64   `json:"connected"`
	SessionPresent   int64   `json:"session_present"`
	Received         int64   `json:"received"`
	Lost             int64   `json:"lost"`
	Retries          int64   `json:"retries"`
	// MeanConnackMs: dial to CONNACK, per device; MeanMessageMs: CONNACK
	// to the device's message.
	MeanConnackMs float64 `json:"mean_connack_ms"`
	MeanMessageMs float64 `json:"mean_message_ms"`
}

func run(ctx context.Context, cfg Config, log io.Writer) (*Result, error) {
	res := &Result{Sessions: cfg.Sessions, Sources: cfg.Sources, Dials: cfg.Dials}
	// Each device is a socket here and one in the server (two with
	// mosquitto running alongside is not done: systems run one at a time).
	limit, err := raiseNoFile(uint64(cfg.Sessions) + 4096)
	if err != nil {
		return res, fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	res.NoFile = limit
	if limit < uint64(cfg.Sessions)+100 {
		fmt.Fprintf(log, "fleetbench: RLIMIT_NOFILE is %d: it bounds the fleet (fleetbench and the servers inherit it)\n", limit)
	}
	dir, err := os.MkdirTemp(cfg.TempDir, "fleetbench-")
	if err != nil {
		return res, err
	}
	if cfg.Keep {
		fmt.Fprintf(log, "fleetbench: data and logs in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	sr, err := runStrata(ctx, cfg, dir, log, res)
	if sr != nil {
		res.Systems = append(res.Systems, sr)
	}
	if err != nil {
		return res, err
	}
	if cfg.Mosquitto != "" {
		mr, err := runMosquitto(ctx, cfg, filepath.Join(dir, "mosquitto"), log)
		if mr != nil {
			res.Systems = append(res.Systems, mr)
		}
		if err != nil {
			return res, fmt.Errorf("mosquitto: %w", err)
		}
	}
	return res, nil
}

// procRef names a process whose RSS is measured.
type procRef struct {
	name string
	pid  int
}

// measureFleet opens the fleet against addr, lets it idle and fills in the
// connect rate and each process's RSS growth. idle, when set, runs once
// the fleet is idle, before RSS is read.
func measureFleet(ctx context.Context, cfg Config, name, addr string, procs []procRef, f *fleet, idle func() error, log io.Writer) (*SystemResult, error) {
	sr := &SystemResult{Name: name}
	before := make([]int64, len(procs))
	for i, p := range procs {
		v, err := rssKiB(p.pid)
		if err != nil {
			return sr, err
		}
		before[i] = v
	}
	fmt.Fprintf(log, "fleetbench: %s: opening %d durable sessions on %s\n", name, cfg.Sessions, addr)
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	start := time.Now()
	err := f.openAll(pctx)
	cancel()
	if err != nil {
		return sr, fmt.Errorf("connect and subscribe: %w", err)
	}
	sr.ConnectSeconds = time.Since(start).Seconds()
	sr.ConnectRate = float64(cfg.Sessions) / sr.ConnectSeconds
	sr.Retries = f.retries.Swap(0)
	fmt.Fprintf(log, "fleetbench: %s: %d sessions in %.1f s (%.0f/s); idle for %v\n", name, cfg.Sessions, sr.ConnectSeconds, sr.ConnectRate, cfg.Settle)
	if !pauseCtx(ctx, cfg.Settle) {
		return sr, ctx.Err()
	}
	if idle != nil {
		if err := idle(); err != nil {
			return sr, err
		}
	}
	for i, p := range procs {
		after, err := rssKiB(p.pid)
		if err != nil {
			return sr, err
		}
		sr.Procs = append(sr.Procs, ProcRSS{Name: p.name, BeforeKiB: before[i], AfterKiB: after,
			PerSession: float64(after-before[i]) / float64(cfg.Sessions)})
	}
	return sr, nil
}

var goMetrics = []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
	"strata_gateway_connections", "strata_gateway_connections_closed_total"}

func runStrata(ctx context.Context, cfg Config, dir string, log io.Writer, res *Result) (*SystemResult, error) {
	var procs []procRef
	addr := cfg.Addr
	var s *strata
	if addr == "" {
		var err error
		s, err = startStrata(ctx, cfg.Bin, dir, cfg.Sessions, cfg.Pprof != "", cfg.DSDPprof != "")
		if s != nil {
			defer s.stop()
		}
		if err != nil {
			return nil, err
		}
		addr = s.mqttAddr
		procs = []procRef{{"gateway", s.gateway.Pid()}, {"dsd", s.dsd.Pid()}}
	} else {
		for _, pid := range cfg.Pids {
			procs = append(procs, procRef{fmt.Sprintf("pid %d", pid), pid})
		}
	}
	var metricsBefore map[string]float64
	metricsURL := ""
	if s != nil {
		metricsURL = "http://" + s.httpAddr + "/metrics"
		var err error
		if metricsBefore, err = scrape(ctx, metricsURL, goMetrics...); err != nil {
			return nil, err
		}
	}
	f := newFleet(addr, cfg.Sessions, cfg.Sources, cfg.Dials, cfg.Expiry)
	defer f.closeAll()
	var metricsAfter map[string]float64
	idle := func() error {
		if s == nil {
			return nil
		}
		if err := errorsOf(s.gateway.Alive(), s.dsd.Alive()); err != nil {
			return err
		}
		for _, hp := range []struct{ who, addr, file string }{{"gateway", s.httpAddr, cfg.Pprof}, {"dsd", s.dsdHTTP, cfg.DSDPprof}} {
			if hp.file == "" {
				continue
			}
			b, err := get(ctx, "http://"+hp.addr+"/debug/pprof/heap?gc=1")
			if err != nil {
				return fmt.Errorf("%s heap profile: %w", hp.who, err)
			}
			if err := os.WriteFile(hp.file, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(log, "fleetbench: %s heap profile in %s\n", hp.who, hp.file)
		}
		var err error
		metricsAfter, err = scrape(ctx, metricsURL, goMetrics...)
		return err
	}
	sr, err := measureFleet(ctx, cfg, "Strata", addr, procs, f, idle, log)
	if err != nil {
		return sr, err
	}
	if metricsAfter != nil {
		per := func(m string) float64 { return (metricsAfter[m] - metricsBefore[m]) / float64(cfg.Sessions) }
		sr.GatewayHeapPerSession = per("go_memstats_heap_inuse_bytes")
		sr.GatewayStackPerSession = per("go_memstats_stack_inuse_bytes")
		sr.GatewayGoroutines = per("go_goroutines")
		sr.GatewayConnections = metricsAfter["strata_gateway_connections"]
		sr.GatewayClosed = metricsAfter["strata_gateway_connections_closed_total"] - metricsBefore["strata_gateway_connections_closed_total"]
		if sr.GatewayConnections != float64(cfg.Sessions) {
			fmt.Fprintf(log, "fleetbench: the gateway holds %.0f connections of %d (closed %.0f)\n", sr.GatewayConnections, cfg.Sessions, sr.GatewayClosed)
		}
	}
	if cfg.Kill && s != nil {
		res.Reconnect, err = killAndReconnect(ctx, cfg, s, f, log)
	}
	return sr, err
}

func errorsOf(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// killAndReconnect SIGKILLs the gateway, starts it again on the same
// address, publishes to every device while the devices are away, and
// reconnects them all.
func killAndReconnect(ctx context.Context, cfg Config, s *strata, f *fleet, log io.Writer) (*ReconnectResult, error) {
	rr := &ReconnectResult{}
	fmt.Fprintf(log, "fleetbench: SIGKILL to the gateway\n")
	killed := time.Now()
	s.gateway.Kill()
	f.closeAll()
	if err := s.startGateway(ctx, s.mqttAddr, 2); err != nil {
		return rr, fmt.Errorf("gateway restart: %w", err)
	}
	rr.RestartSeconds = time.Since(killed).Seconds()
	fmt.Fprintf(log, "fleetbench: gateway ready again after %.1f s; publishing to %d devices\n", rr.RestartSeconds, cfg.Sessions)
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	if err := publishAll(pctx, s.mqttAddr, cfg.Sessions, 32); err != nil {
		return rr, err
	}
	rr.PublishSeconds = time.Since(start).Seconds()
	fmt.Fprintf(log, "fleetbench: published in %.1f s; reconnecting the devices\n", rr.PublishSeconds)
	var got reconnectResult
	start = time.Now()
	err := f.reconnectAll(pctx, &got)
	rr.Connected, rr.SessionPresent, rr.Received = got.connected.Load(), got.present.Load(), got.received.Load()
	rr.Lost = int64(cfg.Sessions) - rr.Received
	rr.Retries = f.retries.Swap(0)
	if rr.Connected > 0 {
		rr.MeanConnackMs = float64(got.connackNs.Load()) / float64(rr.Connected) / 1e6
	}
	if rr.Received > 0 {
		rr.MeanMessageMs = float64(got.messageNs.Load()) / float64(rr.Received) / 1e6
	}
	if t := got.connectedAt.Load(); t > 0 {
		rr.ReconnectSeconds = time.Unix(0, t).Sub(start).Seconds()
	}
	if t := got.receivedAt.Load(); t > 0 {
		rr.DeliverSeconds = time.Unix(0, t).Sub(start).Seconds()
	}
	fmt.Fprintf(log, "fleetbench: %d reconnected (%d with their session) in %.1f s; %d received, %d lost\n",
		rr.Connected, rr.SessionPresent, rr.ReconnectSeconds, rr.Received, rr.Lost)
	if err != nil {
		return rr, fmt.Errorf("reconnect: %w", err)
	}
	return rr, nil
}

func runMosquitto(ctx context.Context, cfg Config, dir string, log io.Writer) (*SystemResult, error) {
	p, addr, err := startMosquitto(ctx, cfg.Mosquitto, dir)
	if p != nil {
		defer func() { _ = p.Stop(30 * time.Second) }() // what is measured is done; its exit status adds nothing
	}
	if err != nil {
		return nil, err
	}
	f := newFleet(addr, cfg.Sessions, cfg.Sources, cfg.Dials, cfg.Expiry)
	defer f.closeAll()
	return measureFleet(ctx, cfg, "mosquitto", addr, []procRef{{"mosquitto", p.Pid()}}, f, p.Alive, log)
}
