package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// Bounds of what one idle connection (accepted, nothing sent) may hold in
// the gateway: Go heap, and heap plus goroutine stacks. Measured 2.7 KiB of
// heap and 0.2 KiB of stack, with no goroutine (it is parked:
// conn_park.go); with a read goroutine each it was 2.8 KiB and 4.0 KiB
// (docs/security.md), and before buffers and the writer were made lazily
// 43.4 KiB of heap (the 1,024-packet outbound queue, 4 KiB read and write
// buffers) and 6.1 KiB of stack.
const (
	idleHeapBound  = 8 << 10
	idleTotalBound = 10 << 10
)

// TestIdleConnectionMemory: 10,000 TCP connections that never send a byte
// hold a bounded amount of gateway memory each. The client sockets live in
// a child process (this test binary, running idleClients), so the figure
// is the gateway's alone and each process needs about 10,000 descriptors.
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes the figures meaningless")
	}
	const n = 10000
	raiseNoFile(t, uint64(n+1000))
	s := testServer(t, func(o *Options) {
		o.hooks = &testHooks{parkAfter: time.Nanosecond}
		o.ConnectTimeout = 5 * time.Minute
		o.Config.Gateway.MaxConnections = 0
		o.Config.Gateway.MaxConnectionsPerAddress = 0
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClients$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", idleClientsEnv, s.addr("tcp"), n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close() // the child closes its connections and exits
		_ = cmd.Wait()
		wait.For(t, time.Minute, "the connections to end", func() bool { return s.gate.total() == 0 })
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	wait.For(t, time.Minute, "every connection to park", func() bool {
		return s.gate.total() == n && parkedConns(s) == n
	})
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	stack := int64(after.StackInuse) - int64(before.StackInuse)
	perHeap, perStack := heap/n, stack/n
	if g := runtime.NumGoroutine() - goroutines; g > n/100 {
		t.Errorf("%d goroutines more with %d parked connections, want at most %d", g, n, n/100)
	}
	t.Logf("%d idle connections: heap %s (%s each), stacks %s (%s each), goroutines +%d",
		n, kib(heap), kib(perHeap), kib(stack), kib(perStack), runtime.NumGoroutine()-goroutines)
	if perHeap > idleHeapBound {
		t.Errorf("heap per idle connection %s, want at most %s", kib(perHeap), kib(idleHeapBound))
	}
	if perHeap+perStack > idleTotalBound {
		t.Errorf("heap and stack per idle connection %s, want at most %s", kib(perHeap+perStack), kib(idleTotalBound))
	}
}

// idleClientsEnv names the variable that makes TestIdleClients the child
// of TestIdleConnectionMemory: "address,count".
const idleClientsEnv = "STRATA_TEST_IDLE_CLIENTS"

// TestIdleClients is the child process of TestIdleConnectionMemory: it
// opens the connections from 127.0.0.1 to 127.0.0.4 (so the ephemeral ports
// suffice), prints "ready", and holds them until its stdin closes.
func TestIdleClients(t *testing.T) {
	spec := os.Getenv(idleClientsEnv)
	if spec == "" {
		t.Skip("the child process of TestIdleConnectionMemory")
	}
	addr, count, _ := strings.Cut(spec, ",")
	n, err := strconv.Atoi(count)
	if err != nil {
		t.Fatal(err)
	}
	raiseNoFile(t, uint64(n+1000))
	dialers := make([]net.Dialer, 4)
	for i := range dialers {
		dialers[i] = net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}}
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range conns {
			_ = nc.Close()
		}
	}()
	for i := range n {
		nc, err := dialers[i%len(dialers)].Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, nc)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// raiseNoFile raises this process's RLIMIT_NOFILE to need, or skips the
// test when it cannot.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skipf("cannot read RLIMIT_NOFILE: %v", err)
	}
	if old.Cur >= need {
		return
	}
	raised := syscall.Rlimit{Cur: need, Max: max(old.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
		t.Skipf("needs %d file descriptors and cannot raise RLIMIT_NOFILE from %d (hard %d): %v", need, old.Cur, old.Max, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

func kib(n int64) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }

// parkedConns counts the server's parked connections.
func parkedConns(s *Server) int {
	n := 0
	for _, c := range s.connections() {
		if c.parked.Load() {
			n++
		}
	}
	return n
}
