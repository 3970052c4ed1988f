package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// startTimeout bounds the wait for a child's ready line or port.
const startTimeout = 60 * time.Second

// proc is one child process; its output goes to a log file, watched for a
// ready line.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's result, set before exited is closed
}

// start runs bin with args, output to logPath. ready, when not nil, must
// match a line of the output before start returns that line.
func start(ctx context.Context, name, logPath string, ready *regexp.Regexp, bin string, args ...string) (*proc, string, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	w := &watcher{w: f, re: ready, found: make(chan string, 1)}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group (a terminal's Ctrl-C reaches only fleetbench,
	// which stops the children); SIGKILL if fleetbench dies.
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
		p.kill()
		return p, "", fmt.Errorf("%s not ready after %v; log %s:\n%s", name, startTimeout, logPath, tail(logPath))
	case <-ctx.Done():
		p.kill()
		return p, "", ctx.Err()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.log.Close()
}

// stop sends SIGTERM, then SIGKILL after timeout.
func (p *proc) stop(timeout time.Duration) {
	select {
	case <-p.exited:
		p.log.Close()
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		p.log.Close()
	case <-t.C:
		p.kill()
	}
}

// alive reports an error if the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); log %s:\n%s", p.name, p.err, p.log.Name(), tail(p.log.Name())) // lint:nowrap p.err is nil after a clean exit
	default:
		return nil
	}
}

// watcher copies a child's output to w and reports the first line that
// matches re.
type watcher struct {
	w     *os.File
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

func tail(path string) string {
	b, _ := os.ReadFile(path)
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

var (
	dsdReady     = regexp.MustCompile(`msg="dsd ready"`)
	gatewayReady = regexp.MustCompile(`msg="gateway ready"`)
	grpcAttr     = regexp.MustCompile(` grpc=(\S+)`)
	httpAttr     = regexp.MustCompile(` http=(\S+)`)
	tcpAttr      = regexp.MustCompile(` tcp\.default=(\S+)`)
)

func attr(re *regexp.Regexp, line string) (string, error) {
	m := re.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("no %s in %q", strings.TrimSpace(strings.TrimSuffix(re.String(), `(\S+)`)), line)
	}
	return m[1], nil
}

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
	dsd      *proc
	gateway  *proc
	grpcAddr string
	mqttAddr string
	httpAddr string // the gateway's
	pprof    bool
}

func startStrata(ctx context.Context, bin, dir string, sessions int, pprof bool) (*strata, error) {
	s := &strata{dir: dir, bin: bin, conf: filepath.Join(dir, "strata.toml"), pprof: pprof}
	if err := os.WriteFile(s.conf, []byte(strataConf(sessions)), 0o644); err != nil {
		return nil, err
	}
	d, line, err := start(ctx, "dsd", filepath.Join(dir, "dsd.log"), dsdReady, filepath.Join(bin, "dsd"),
		"--config", s.conf, "--data-dir", filepath.Join(dir, "dsd-data"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	s.dsd = d
	if err != nil {
		return s, err
	}
	if s.grpcAddr, err = attr(grpcAttr, line); err != nil {
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
	g, line, err := start(ctx, "gateway", filepath.Join(s.dir, fmt.Sprintf("gateway-%d.log", n)), gatewayReady, filepath.Join(s.bin, "gateway"), args...)
	s.gateway = g
	if err != nil {
		return err
	}
	mqtt, err1 := attr(tcpAttr, line)
	http, err2 := attr(httpAttr, line)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.mqttAddr, s.httpAddr = mqtt, http
	return nil
}

func (s *strata) stop() {
	if s.gateway != nil {
		s.gateway.stop(30 * time.Second)
	}
	if s.dsd != nil {
		s.dsd.stop(30 * time.Second)
	}
}

// mosquittoConf: persistence on, as in tools/benchcmp; no per-client
// limits that a fleet meets.
func mosquittoConf(port int, dataDir string) string {
	return fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1800
max_connections -1
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
`, port, dataDir)
}

// startMosquitto runs mosquitto on a free loopback port.
func startMosquitto(ctx context.Context, bin, dir string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	// Started as root, mosquitto runs as the user "mosquitto", which must
	// reach and write its persistence directory.
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("mosquitto"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
				_ = os.Chmod(d, 0o711)
			}
			if err := os.Chown(dir, uid, gid); err != nil {
				return nil, "", err
			}
		}
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(mosquittoConf(port, dir)), 0o644); err != nil {
		return nil, "", err
	}
	p, _, err := start(ctx, "mosquitto", filepath.Join(dir, "mosquitto.log"), nil, bin, "-c", conf)
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, addr, nil
		}
		if err := p.alive(); err != nil {
			return p, "", err
		}
		if time.Now().After(deadline) {
			p.kill()
			return p, "", fmt.Errorf("mosquitto not listening on %s: %w", addr, err)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			p.kill()
			return p, "", ctx.Err()
		case <-t.C:
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
