package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the built programs.
type Binaries struct {
	Dir string
}

// Path returns the path of a built program.
func (b Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

// Build compiles dsd, dstool and the gateway into dir from the module root.
func Build(dir string) (Binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return Binaries{}, err
	}
	// -tags failpoints compiles internal/failpoint in (release builds leave
	// it out), so the crash tests can arm STRATA_FAILPOINTS.
	cmd := exec.Command("go", "build", "-tags", "failpoints", "-o", dir+string(os.PathSeparator), "./dsd/cmd/dsd", "./tools/dstool", "./gateway/cmd/gateway")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("integration: go build: %w\n%s", err, out)
	}
	return Binaries{Dir: dir}, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("integration: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// DSD is a running dsd child process.
type DSD struct {
	cmd      *exec.Cmd
	GRPCAddr string
	HTTPAddr string
	DataDir  string
	bin      Binaries
	cfg      DSDConfig
	done     chan struct{} // closed when the process has exited
	exitErr  error
	logMu    sync.Mutex
	log      strings.Builder
}

// DSDConfig describes how to start dsd.
type DSDConfig struct {
	DataDir    string
	ConfigFile string // optional
	// GRPCListen and HTTPListen default to 127.0.0.1:0 (a free port).
	GRPCListen string
	HTTPListen string
	// Join, when set, is passed as --join (a site of the cluster to join).
	Join string
}

var readyLine = regexp.MustCompile(`msg="dsd ready".* grpc=(\S+) http=(\S+)`)

// StartDSD starts dsd and waits until it logs that it is ready.
func StartDSD(ctx context.Context, bin Binaries, cfg DSDConfig) (*DSD, error) {
	if cfg.GRPCListen == "" {
		cfg.GRPCListen = "127.0.0.1:0"
	}
	if cfg.HTTPListen == "" {
		cfg.HTTPListen = "127.0.0.1:0"
	}
	args := []string{"--data-dir", cfg.DataDir, "--grpc-listen", cfg.GRPCListen, "--http-listen", cfg.HTTPListen}
	if cfg.ConfigFile != "" {
		args = append(args, "--config", cfg.ConfigFile)
	}
	if cfg.Join != "" {
		args = append(args, "--join", cfg.Join)
	}
	d := &DSD{DataDir: cfg.DataDir, bin: bin, cfg: cfg, done: make(chan struct{})}
	d.cmd = exec.Command(bin.Path("dsd"), args...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("integration: start dsd: %w", err)
	}
	ready := make(chan [2]string, 1)
	// The scanner goroutine ends when the process closes stderr (it exits).
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		d.scanLog(stderr, ready)
	}()
	go func() {
		<-scanDone
		d.exitErr = d.cmd.Wait()
		close(d.done)
	}()
	select {
	case addrs := <-ready:
		d.GRPCAddr, d.HTTPAddr = addrs[0], addrs[1]
		return d, nil
	case <-d.done:
		return nil, fmt.Errorf("integration: dsd exited before ready: %v\n%s", d.exitErr, d.Log()) // lint:nowrap exitErr is nil after a clean exit
	case <-ctx.Done():
		d.Kill()
		return nil, fmt.Errorf("integration: dsd not ready: %w\n%s", ctx.Err(), d.Log())
	}
}

func (d *DSD) scanLog(r io.Reader, ready chan<- [2]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		d.logMu.Lock()
		d.log.WriteString(line)
		d.log.WriteByte('\n')
		d.logMu.Unlock()
		if m := readyLine.FindStringSubmatch(line); m != nil {
			select {
			case ready <- [2]string{m[1], m[2]}:
			default:
			}
		}
	}
	// Keep draining so the child never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// Log returns everything dsd wrote to stderr so far.
func (d *DSD) Log() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// Kill sends SIGKILL and waits for the process to end.
func (d *DSD) Kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Pause stops the dsd process (SIGSTOP): it keeps its sockets and does
// nothing until Resume.
func (d *DSD) Pause() { _ = d.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused dsd (SIGCONT).
func (d *DSD) Resume() { _ = d.cmd.Process.Signal(syscall.SIGCONT) }

// KillAndRestart kills dsd with SIGKILL (if it still runs) and starts it
// again on the same data directory and configuration, listening on the same
// addresses, so clients keep one address across the restart.
func (d *DSD) KillAndRestart(ctx context.Context) (*DSD, error) {
	d.Kill()
	cfg := d.cfg
	cfg.GRPCListen, cfg.HTTPListen = d.GRPCAddr, d.HTTPAddr
	return StartDSD(ctx, d.bin, cfg)
}

// Stop sends SIGTERM and waits up to timeout for a graceful exit; it returns
// the exit error (nil for a clean exit).
func (d *DSD) Stop(timeout time.Duration) error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.exitErr
	case <-time.After(timeout):
		d.Kill()
		return fmt.Errorf("integration: dsd did not stop within %v", timeout)
	}
}

// Gateway is a running gateway child process.
type Gateway struct {
	cmd *exec.Cmd
	// Addrs maps each listener ("tcp.default", "ws.default", ...) and
	// "http" to its bound address.
	Addrs   map[string]string
	done    chan struct{}
	exitErr error
	logMu   sync.Mutex
	log     strings.Builder
}

// GatewayConfig describes how to start a gateway.
type GatewayConfig struct {
	DSDAddr    string
	ConfigFile string // optional
	// MQTTListen and HTTPListen default to 127.0.0.1:0 (a free port);
	// WSListen and TLSListen are added when set.
	MQTTListen, WSListen, TLSListen, HTTPListen string
	// Env is added to the gateway's environment (for example
	// failpoint.EnvVar to arm a failpoint).
	Env []string
}

var gatewayReadyLine = regexp.MustCompile(`msg="gateway ready"(.*)`)
var logAttr = regexp.MustCompile(`(\S+)=(\S+)`)

// StartGateway starts the gateway and waits until it logs that it is ready.
func StartGateway(ctx context.Context, bin Binaries, cfg GatewayConfig) (*Gateway, error) {
	args := []string{"--dsd", cfg.DSDAddr, "--mqtt-listen", or(cfg.MQTTListen, "127.0.0.1:0"), "--http-listen", or(cfg.HTTPListen, "127.0.0.1:0")}
	if lvl := os.Getenv("STRATA_TEST_GATEWAY_LOG"); lvl != "" {
		args = append(args, "--log-level", lvl)
	}
	if cfg.WSListen != "" {
		args = append(args, "--ws-listen", cfg.WSListen)
	}
	if cfg.TLSListen != "" {
		args = append(args, "--tls-listen", cfg.TLSListen)
	}
	if cfg.ConfigFile != "" {
		args = append(args, "--config", cfg.ConfigFile)
	}
	g := &Gateway{done: make(chan struct{})}
	g.cmd = exec.Command(bin.Path("gateway"), args...)
	if len(cfg.Env) > 0 {
		g.cmd.Env = append(os.Environ(), cfg.Env...)
	}
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("integration: start gateway: %w", err)
	}
	ready := make(chan map[string]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			g.logMu.Lock()
			g.log.WriteString(line + "\n")
			g.logMu.Unlock()
			if m := gatewayReadyLine.FindStringSubmatch(line); m != nil {
				addrs := map[string]string{}
				for _, kv := range logAttr.FindAllStringSubmatch(m[1], -1) {
					addrs[kv[1]] = kv[2]
				}
				select {
				case ready <- addrs:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		g.exitErr = g.cmd.Wait()
		close(g.done)
	}()
	select {
	case g.Addrs = <-ready:
		return g, nil
	case <-g.done:
		return nil, fmt.Errorf("integration: gateway exited before ready: %v\n%s", g.exitErr, g.Log()) // lint:nowrap exitErr is nil after a clean exit
	case <-ctx.Done():
		_ = g.cmd.Process.Signal(syscall.SIGKILL)
		<-g.done
		return nil, fmt.Errorf("integration: gateway not ready: %w\n%s", ctx.Err(), g.Log())
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Log returns everything the gateway wrote to stderr so far.
func (g *Gateway) Log() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return g.log.String()
}

// Pid is the gateway's process id.
func (g *Gateway) Pid() int { return g.cmd.Process.Pid }

// Done is closed when the gateway process has exited.
func (g *Gateway) Done() <-chan struct{} { return g.done }

// Kill sends SIGKILL and waits for the process to exit.
func (g *Gateway) Kill() {
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
}

// Stop sends SIGTERM and waits up to timeout for a graceful exit.
func (g *Gateway) Stop(timeout time.Duration) error {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		return g.exitErr
	case <-time.After(timeout):
		_ = g.cmd.Process.Signal(syscall.SIGKILL)
		<-g.done
		return fmt.Errorf("integration: gateway did not stop within %v", timeout)
	}
}
