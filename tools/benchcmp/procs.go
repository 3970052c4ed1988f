package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds the wait for a child's "ready" line or port.
const startTimeout = 30 * time.Second

// proc is one child process. Its stderr goes to a log file and through a
// watcher that reports the first line matching the ready pattern.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's result, set before exited is closed
}

// group owns the child processes and stops them all, in reverse start order.
type group struct {
	log         io.Writer
	stopTimeout time.Duration
	mu          struct {
		sync.Mutex
		procs []*proc
	}
}

// start runs name with args, stderr (and stdout) to logPath. ready, when
// not nil, must match a line of its output before start returns; that line
// is returned.
func (g *group) start(ctx context.Context, name, logPath string, ready *regexp.Regexp, bin string, args ...string) (*proc, string, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	w := &watcher{w: f, re: ready, found: make(chan string, 1)}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group, so a terminal's Ctrl-C reaches only benchcmp,
	// which stops the children in order; SIGKILL if benchcmp dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	g.mu.Lock()
	g.mu.procs = append(g.mu.procs, p)
	g.mu.Unlock()
	if ready == nil {
		return p, "", nil
	}
	t := time.NewTimer(startTimeout)
	defer t.Stop()
	select {
	case m := <-w.found:
		return p, m, nil
	case <-p.exited:
		return p, "", fmt.Errorf("%s exited before it was ready (%v); log %s:\n%s", name, p.err, logPath, tail(logPath)) // lint:nowrap p.err is nil after a clean exit
	case <-t.C:
		return p, "", fmt.Errorf("%s not ready after %v; log %s:\n%s", name, startTimeout, logPath, tail(logPath))
	case <-ctx.Done():
		return p, "", ctx.Err()
	}
}

// check reports a child that has exited while it should be running.
func (g *group) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.mu.procs {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during the run (%v); log %s:\n%s", p.name, p.err, p.log.Name(), tail(p.log.Name())) // lint:nowrap p.err is nil after a clean exit
		default:
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
		p := procs[i]
		if err := p.stop(g.stopTimeout); err != nil {
			errs = append(errs, err)
			fmt.Fprintf(g.log, "benchcmp: %v\n", err)
		}
		p.log.Close()
	}
	return errors.Join(errs...)
}

func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s had exited: %v", p.name, p.err) // lint:nowrap p.err is nil after a clean exit
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		var ee *exec.ExitError
		if p.err != nil && !(errors.As(p.err, &ee) && !ee.Exited()) {
			return fmt.Errorf("%s: %w", p.name, p.err)
		}
		return nil
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %v after SIGTERM: killed", p.name, timeout)
	}
}

// watcher copies a child's output to w and reports the first line matching
// re.
type watcher struct {
	w     io.Writer
	re    *regexp.Regexp
	found chan string
	mu    sync.Mutex
	line  []byte
	done  bool
}

func (w *watcher) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.re != nil && !w.done {
		w.line = append(w.line, b...)
		for {
			i := bytes.IndexByte(w.line, '\n')
			if i < 0 {
				break
			}
			if w.re.Match(w.line[:i]) {
				w.done = true
				w.found <- string(w.line[:i])
				w.line = nil
				break
			}
			w.line = w.line[i+1:]
		}
	}
	return w.w.Write(b)
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
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

// The ready lines of dsd and the gateway, and the bound addresses in them.
var (
	dsdReady     = regexp.MustCompile(`msg="dsd ready"`)
	gatewayReady = regexp.MustCompile(`msg="gateway ready"`)
	grpcAttr     = regexp.MustCompile(` grpc=(\S+)`)
	httpAttr     = regexp.MustCompile(` http=(\S+)`)
	tcpAttr      = regexp.MustCompile(` tcp\.default=(\S+)`)
)

// attr returns re's submatch in line, or an error naming what is missing.
func attr(re *regexp.Regexp, line string) (string, error) {
	m := re.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("no %s in %q", strings.TrimSpace(strings.TrimSuffix(re.String(), `(\S+)`)), line)
	}
	return m[1], nil
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
	dsd, dsdLine, err := g.start(ctx, "dsd", filepath.Join(dir, "dsd.log"), dsdReady, bin("dsd"),
		append([]string{"--data-dir", filepath.Join(dir, "dsd-data"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, profile("dsd")...)...)
	if err != nil {
		return nil, err
	}
	grpcAddr, err1 := attr(grpcAttr, dsdLine)
	dsdHTTP, err2 := attr(httpAttr, dsdLine)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("dsd: %w", err)
	}
	gw, gwLine, err := g.start(ctx, "gateway", filepath.Join(dir, "gateway.log"), gatewayReady, bin("gateway"),
		append([]string{"--dsd", grpcAddr, "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, profile("gateway")...)...)
	if err != nil {
		return nil, err
	}
	mqttAddr, err1 := attr(tcpAttr, gwLine)
	gwHTTP, err2 := attr(httpAttr, gwLine)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	strata := &system{Key: "strata", Name: "Strata", Addr: mqttAddr, Version: "dsd + 1 gateway, default configuration",
		Notes:   []string{"dsd: 16 shards, every commit fsynced (group commit); gateway receive_maximum 32"},
		pids:    []int{dsd.cmd.Process.Pid, gw.cmd.Process.Pid},
		metrics: []string{"http://" + gwHTTP + "/metrics", "http://" + dsdHTTP + "/metrics"}}

	mosq, err := startMosquitto(ctx, g, cfg.Mosquitto, filepath.Join(dir, "mosquitto"))
	if err != nil {
		return nil, err
	}
	return []*system{strata, mosq}, nil
}

// mosquittoConf is the broker's configuration: persistence on as peers.md
// sets it up (snapshot every autosave_interval, its default, written out
// here), queues large enough for the replay scenario, Nagle off.
func mosquittoConf(port int, dataDir string) string {
	return fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1800
max_queued_messages 200000
max_inflight_messages 20
set_tcp_nodelay true
log_dest stderr
`, port, dataDir)
}

// startMosquitto runs mosquitto on a free loopback port, with its
// persistence directory under dir.
func startMosquitto(ctx context.Context, g *group, bin, dir string) (*system, error) {
	version := mosquittoVersion(ctx, bin)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Started as root, mosquitto drops to the user "mosquitto", which must
	// be able to reach and write its persistence directory.
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("mosquitto"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(dir, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(mosquittoConf(port, dir)), 0o644); err != nil {
		return nil, err
	}
	p, _, err := g.start(ctx, "mosquitto", filepath.Join(filepath.Dir(dir), "mosquitto.log"), nil, bin, "-c", conf)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitListening(ctx, p, addr); err != nil {
		return nil, err
	}
	return &system{Key: "mosquitto", Name: "mosquitto", Addr: addr, Version: version,
		Notes: []string{"persistence true, autosave_interval 1800 (default), max_queued_messages 200000, max_inflight_messages 20 (default), set_tcp_nodelay true"},
		pids:  []int{p.cmd.Process.Pid}}, nil
}

// waitListening waits until addr accepts connections or p exits.
func waitListening(ctx context.Context, p *proc, addr string) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v: %w; log %s:\n%s", p.name, addr, startTimeout, err, p.log.Name(), tail(p.log.Name()))
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%v); log %s:\n%s", p.name, p.err, p.log.Name(), tail(p.log.Name())) // lint:nowrap p.err is nil after a clean exit
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// reservedPorts are never used: a shared machine runs other brokers and
// Strata's defaults there.
var reservedPorts = map[int]bool{1883: true, 7070: true, 7071: true, 7072: true}

// freePort returns a loopback port that was free a moment ago (the kernel
// picks it; it is released for mosquitto to bind).
func freePort() (int, error) {
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !reservedPorts[port] {
			return port, nil
		}
	}
	return 0, errors.New("no free port")
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
