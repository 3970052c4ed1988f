package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/stratamq/strata/internal/childproc"
)

// startTimeout bounds the wait for a child's "ready" line or port.
const startTimeout = 30 * time.Second

// group owns the child processes and stops them all, in reverse start order.
type group struct {
	log         io.Writer
	stopTimeout time.Duration
	mu          struct {
		sync.Mutex
		procs []*childproc.Proc
	}
}

// start runs bin with args (childproc.Start) and adds it to the group.
func (g *group) start(ctx context.Context, name, logPath string, ready *regexp.Regexp, bin string, args ...string) (*childproc.Proc, string, error) {
	p, line, err := childproc.Start(ctx, name, logPath, ready, startTimeout, bin, args...)
	if p != nil {
		g.add(p)
	}
	return p, line, err
}

// add makes the group stop p.
func (g *group) add(p *childproc.Proc) {
	g.mu.Lock()
	g.mu.procs = append(g.mu.procs, p)
	g.mu.Unlock()
}

// check reports a child that has exited while it should be running.
func (g *group) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.mu.procs {
		if err := p.Alive(); err != nil {
			return fmt.Errorf("during the run: %w", err)
		}
	}
	return nil
}

// stopAll stops every child, the last started first: SIGTERM, then SIGKILL
// after stopTimeout. It returns the first unexpected exit status.
func (g *group) stopAll() error {
	g.mu.Lock()
	procs := g.mu.procs
	g.mu.procs = nil
	g.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(g.stopTimeout); err != nil {
			errs = append(errs, err)
			fmt.Fprintf(g.log, "benchcmp: %v\n", err)
		}
	}
	return errors.Join(errs...)
}

// system is one MQTT server under test.
type system struct {
	Key, Name string
	Addr      string // MQTT TCP address
	Version   string
	Notes     []string
	pids      []int    // the system's processes
	metrics   []string // Prometheus endpoints (Strata's)
}

func (s *system) describe() SystemInfo {
	return SystemInfo{Key: s.Key, Name: s.Name, Addr: s.Addr, Version: s.Version, Notes: s.Notes}
}

// startSystems starts dsd, a gateway and mosquitto on free loopback ports.
func startSystems(ctx context.Context, g *group, cfg Config, dir string) ([]*system, error) {
	bin := func(name string) string { return filepath.Join(cfg.Bin, name) }
	// profile is the --cpuprofile flag of a Strata process, when asked for.
	profile := func(name string) []string {
		if cfg.Profile == "" {
			return nil
		}
		return []string{"--cpuprofile", filepath.Join(cfg.Profile, filepath.Base(dir)+"-"+name+".pprof")}
	}
	dsd, dsdLine, err := g.start(ctx, "dsd", filepath.Join(dir, "dsd.log"), childproc.DSDReady, bin("dsd"),
		append([]string{"--data-dir", filepath.Join(dir, "dsd-data"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, profile("dsd")...)...)
	if err != nil {
		return nil, err
	}
	grpcAddr, err1 := childproc.Attr(childproc.GRPCAttr, dsdLine)
	dsdHTTP, err2 := childproc.Attr(childproc.HTTPAttr, dsdLine)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("dsd: %w", err)
	}
	gw, gwLine, err := g.start(ctx, "gateway", filepath.Join(dir, "gateway.log"), childproc.GatewayReady, bin("gateway"),
		append([]string{"--dsd", grpcAddr, "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, profile("gateway")...)...)
	if err != nil {
		return nil, err
	}
	mqttAddr, err1 := childproc.Attr(childproc.TCPAttr, gwLine)
	gwHTTP, err2 := childproc.Attr(childproc.HTTPAttr, gwLine)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	strata := &system{Key: "strata", Name: "Strata", Addr: mqttAddr, Version: "dsd + 1 gateway, default configuration",
		Notes:   []string{"dsd: 16 shards, every commit fsynced (group commit); gateway receive_maximum 32"},
		pids:    []int{dsd.Pid(), gw.Pid()},
		metrics: []string{"http://" + gwHTTP + "/metrics", "http://" + dsdHTTP + "/metrics"}}

	mosq, err := startMosquitto(ctx, g, cfg.Mosquitto, filepath.Join(dir, "mosquitto"))
	if err != nil {
		return nil, err
	}
	return []*system{strata, mosq}, nil
}

// mosquittoLimits are the lines benchcmp adds to childproc.MosquittoConf:
// queues large enough for the replay scenario, the default inflight window
// written out.
var mosquittoLimits = []string{"max_queued_messages 200000", "max_inflight_messages 20"}

// startMosquitto runs mosquitto on a free loopback port, with its
// persistence directory under dir.
func startMosquitto(ctx context.Context, g *group, bin, dir string) (*system, error) {
	version := mosquittoVersion(ctx, bin)
	p, addr, err := childproc.StartMosquitto(ctx, bin, dir, filepath.Join(filepath.Dir(dir), "mosquitto.log"), startTimeout, mosquittoLimits...)
	if err != nil {
		return nil, err
	}
	g.add(p)
	return &system{Key: "mosquitto", Name: "mosquitto", Addr: addr, Version: version,
		Notes: []string{"persistence true, autosave_interval 1800 (default), max_queued_messages 200000, max_inflight_messages 20 (default), set_tcp_nodelay true"},
		pids:  []int{p.Pid()}}, nil
}

// mosquittoVersion is the first line of `mosquitto -h` ("mosquitto version
// 2.0.11"); mosquitto exits with status 3 after printing its help.
func mosquittoVersion(ctx context.Context, bin string) string {
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	first, _, _ := bytes.Cut(out, []byte("\n"))
	if len(first) == 0 {
		return "mosquitto (version unknown)"
	}
	return string(bytes.TrimSpace(first))
}
