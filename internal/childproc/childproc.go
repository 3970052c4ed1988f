// Package childproc runs the servers a measuring tool puts under load (dsd,
// the gateway, mosquitto) as child processes: output to a log file watched
// for a ready line, a stop that sends SIGTERM and then SIGKILL, and the ready
// lines of Strata's binaries with the addresses they bound. tools/benchcmp
// and tools/fleetbench use it.
package childproc

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

// Proc is one child process.
type Proc struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's result, set before exited is closed
	closed sync.Once
}

// Start runs bin with args, its output (stdout and stderr) to logPath. When
// ready is not nil, a line of the output must match it within timeout:
// Start returns that line, or stops the child and returns an error with the
// log's end. The child has its own process group (a terminal's Ctrl-C
// reaches only the tool, which stops it) and is killed if the tool dies.
func Start(ctx context.Context, name, logPath string, ready *regexp.Regexp, timeout time.Duration, bin string, args ...string) (*Proc, string, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	w := &watcher{w: f, re: ready, found: make(chan string, 1)}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, log: f, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if ready == nil {
		return p, "", nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-w.found:
		return p, m, nil
	case <-p.exited:
		p.closeLog()
		return p, "", fmt.Errorf("%s exited before it was ready (%v); log %s:\n%s", name, p.err, logPath, Tail(logPath)) // lint:nowrap p.err is nil after a clean exit
	case <-t.C:
		p.Kill()
		return p, "", fmt.Errorf("%s not ready after %v; log %s:\n%s", name, timeout, logPath, Tail(logPath))
	case <-ctx.Done():
		p.Kill()
		return p, "", ctx.Err()
	}
}

// Name is the name the child was started under.
func (p *Proc) Name() string { return p.name }

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath is the child's log file.
func (p *Proc) LogPath() string { return p.log.Name() }

// Exited is closed once the child has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Alive returns an error, with the log's end, once the child has exited.
func (p *Proc) Alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); log %s:\n%s", p.name, p.err, p.LogPath(), Tail(p.LogPath())) // lint:nowrap p.err is nil after a clean exit
	default:
		return nil
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.closeLog()
}

// Stop sends SIGTERM and waits up to timeout, then kills. It reports a
// child that had exited already, one that ended with a failure status, and
// one that had to be killed.
func (p *Proc) Stop(timeout time.Duration) error {
	defer p.closeLog()
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

func (p *Proc) closeLog() { p.closed.Do(func() { p.log.Close() }) }

// watcher copies a child's output to w and reports the first line that
// matches re.
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

// Tail returns the end of a log file, for error messages.
func Tail(path string) string {
	b, _ := os.ReadFile(path)
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// The ready lines of dsd and the gateway, and the bound addresses in them.
var (
	DSDReady     = regexp.MustCompile(`msg="dsd ready"`)
	GatewayReady = regexp.MustCompile(`msg="gateway ready"`)
	GRPCAttr     = regexp.MustCompile(` grpc=(\S+)`)
	HTTPAttr     = regexp.MustCompile(` http=(\S+)`)
	TCPAttr      = regexp.MustCompile(` tcp\.default=(\S+)`)
)

// Attr returns re's submatch in line, or an error naming what is missing.
func Attr(re *regexp.Regexp, line string) (string, error) {
	m := re.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("no %s in %q", strings.TrimSpace(strings.TrimSuffix(re.String(), `(\S+)`)), line)
	}
	return m[1], nil
}

// WaitListening waits until addr accepts connections, p exits or timeout
// passes.
func WaitListening(ctx context.Context, p *Proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v: %w; log %s:\n%s", p.name, addr, timeout, err, p.LogPath(), Tail(p.LogPath()))
		}
		select {
		case <-p.exited:
			return p.Alive()
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// reservedPorts are never handed out: a shared machine runs other brokers
// and Strata's defaults there.
var reservedPorts = map[int]bool{1883: true, 7070: true, 7071: true, 7072: true}

// FreePort returns a loopback port that was free a moment ago (the kernel
// picks it; it is released for a child to bind).
func FreePort() (int, error) {
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
	return 0, errors.New("childproc: no free port")
}

// MosquittoDir makes dir for mosquitto's persistence. Started as root,
// mosquitto drops to the user "mosquitto", which must reach and write it:
// dir is given to that user and the folders above it made traversable.
func MosquittoDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("mosquitto")
	if err != nil {
		return nil // no such user: mosquitto stays root and can write anywhere
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for d := filepath.Dir(dir); d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o711)
	}
	return os.Chown(dir, uid, gid)
}

// MosquittoConf is mosquitto's configuration for the tools, as
// reference/peers.md sets it up: a loopback listener on port, anonymous
// clients, persistence in dataDir (a snapshot every autosave_interval, its
// default, written out), Nagle off, logs to stderr; then each of extra, a
// line of the tool's own limits.
func MosquittoConf(port int, dataDir string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1800\nset_tcp_nodelay true\nlog_dest stderr\n", port, dataDir)
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// StartMosquitto runs mosquitto (bin) on a free loopback port with its
// persistence in dir (MosquittoDir, MosquittoConf with extra), its log at
// logPath, and returns it with its address once the port accepts
// connections; on failure the child is stopped.
func StartMosquitto(ctx context.Context, bin, dir, logPath string, timeout time.Duration, extra ...string) (*Proc, string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	if err := MosquittoDir(dir); err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(MosquittoConf(port, dir, extra...)), 0o644); err != nil {
		return nil, "", err
	}
	p, _, err := Start(ctx, "mosquitto", logPath, nil, timeout, bin, "-c", conf)
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := WaitListening(ctx, p, addr, timeout); err != nil {
		p.Kill()
		return nil, "", err
	}
	return p, addr, nil
}
