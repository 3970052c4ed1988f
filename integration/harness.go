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

// Build compiles dsd and dstool into dir from the module root.
func Build(dir string) (Binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return Binaries{}, err
	}
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./dsd/cmd/dsd", "./tools/dstool")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("integration: go build: %v\n%s", err, out)
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
	d := &DSD{DataDir: cfg.DataDir, done: make(chan struct{})}
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
		return nil, fmt.Errorf("integration: dsd exited before ready: %v\n%s", d.exitErr, d.Log())
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

// Torture reports whether long variants were asked for (make torture).
func Torture() bool { return os.Getenv("STRATA_TORTURE") != "" }
