package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"

	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestCrashDSDUnderQoS1Load kills dsd with SIGKILL 10 times (50 with make
// torture) under QoS 1 load from 3 publishers to a durable subscriber, and
// restarts it on the same data: every acknowledged message is delivered
// (lost = 0), in order per (publisher, topic), and the subscriber finds
// its session on every reconnect.
func TestCrashDSDUnderQoS1Load(t *testing.T) {
	kills := 10
	if testutil.Torture() {
		kills = 50
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 1)
	run := startLoad(ctx, func() string { return c.addr(0) }, "crash-sub", "crash/+", 3, "crash/%d", 8)
	for i := range kills {
		run.waitAcked(t, 100, fmt.Sprintf("load before kill %d", i+1))
		d, err := c.dsd.KillAndRestart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.dsd = d
	}
	run.waitAcked(t, 100, "load after the last kill")
	rep := run.finish(t)
	t.Logf("%d dsd kills: %s; subscriber reconnects %d", kills, rep, run.disconnects.Load())
}

// heartbeatConfig writes a configuration with a 1 s gateway heartbeat: the
// gateway holds its lease 2 s without an answer, dsd 3 s.
func heartbeatConfig(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "strata.toml")
	if err := os.WriteFile(f, []byte("[durable_sessions]\ngateway_heartbeat_interval = \"1s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDSDPausedBriefly: dsd stopped (SIGSTOP) for less than one heartbeat
// interval under QoS 1 load: no client is disconnected, no PUBACK is sent
// while dsd cannot have committed anything, the gateway's memory stays
// bounded, and nothing acked is lost.
func TestDSDPausedBriefly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startClusterConfig(t, ctx, 1, heartbeatConfig(t))
	run := startLoad(ctx, func() string { return c.addr(0) }, "pause-sub", "pause/+", 3, "pause/%d", 4)
	rssBefore := rssBytes(t, c.gateways[0].Pid())
	const pauses, pause = 3, 400 * time.Millisecond
	var windows [][2]int64
	for range pauses {
		run.waitAcked(t, 100, "load before the pause")
		c.dsd.Pause()
		from := time.Now()
		time.Sleep(pause) // models: the fault, dsd stopped (SIGSTOP) for pause; the pause itself is under test
		to := time.Now()
		c.dsd.Resume()
		// A reply dsd sent just before it stopped may still be acked a
		// moment later: the window starts 50 ms in.
		windows = append(windows, [2]int64{from.Add(50 * time.Millisecond).UnixMicro(), to.UnixMicro()})
	}
	run.waitAcked(t, 100, "load after the pauses")
	rep := run.finish(t)
	for _, e := range run.h.Events() {
		for _, w := range windows {
			if e.Kind == "ack" && e.TimeUs > w[0] && e.TimeUs < w[1] {
				t.Fatalf("a PUBACK arrived while dsd was stopped: %+v (pause %v)", e, w)
			}
		}
		if e.Kind == "unknown" && e.TimeUs < windows[len(windows)-1][1] {
			t.Fatalf("a publisher was disconnected: %+v", e)
		}
	}
	if n := run.disconnects.Load(); n != 0 {
		t.Fatalf("the subscriber was disconnected %d times", n)
	}
	rssAfter := rssBytes(t, c.gateways[0].Pid())
	if rssAfter > rssBefore+64<<20 {
		t.Fatalf("gateway memory grew from %d to %d bytes across the pauses", rssBefore, rssAfter)
	}
	t.Logf("%d pauses of %v: %s; gateway RSS %d → %d KiB", pauses, pause, rep, rssBefore>>10, rssAfter>>10)
}

// TestDSDPausedBeyondLease: dsd stopped for longer than the lease: the
// gateway closes its connections, clients reconnect once dsd is back and
// resume their sessions, and nothing acked is lost.
func TestDSDPausedBeyondLease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startClusterConfig(t, ctx, 1, heartbeatConfig(t))
	run := startLoad(ctx, func() string { return c.addr(0) }, "lease-sub", "lease/+", 2, "lease/%d", 4)
	run.waitAcked(t, 100, "load before the pause")
	c.dsd.Pause()
	wait.For(t, 20*time.Second, "the gateway to drop its clients", func() bool { return run.disconnects.Load() > 0 })
	c.dsd.Resume()
	run.waitAcked(t, 100, "load after the pause")
	rep := run.finish(t)
	t.Logf("pause beyond the lease: %s; subscriber reconnects %d", rep, run.disconnects.Load())
}

// rssBytes reads a process's resident set size from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestMassReconnectAfterGatewayKill: 2,000 durable clients, each
// subscribed, are connected to gateway A when it is killed (SIGKILL); all
// of them reconnect to gateway B and find their sessions within the
// stated bound (30 s; measured figures in docs/benchmarks.md).
func TestMassReconnectAfterGatewayKill(t *testing.T) {
	clients := 2000
	if testing.Short() {
		clients = 500
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The test is about resuming sessions, not admission: the default
	// max_conn_rate (1000/s, taken at accept) would close some of the
	// reconnects, which come faster than that.
	conf := filepath.Join(t.TempDir(), "strata.toml")
	if err := os.WriteFile(conf, []byte("[mqtt]\nmax_conn_rate = \"100000/s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterConfig(t, ctx, 2, conf)
	const workers = 32
	each := func(f func(i int) error) error {
		errs := make(chan error, workers)
		next := make(chan int)
		go func() {
			defer close(next)
			for i := range clients {
				select {
				case next <- i:
				case <-ctx.Done():
					return
				}
			}
		}()
		for range workers {
			go func() {
				var first error
				for i := range next {
					if err := f(i); err != nil && first == nil {
						first = err
					}
				}
				errs <- first
			}()
		}
		var first error
		for range workers {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	conns := make([]net.Conn, clients)
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	connect := func(addr string, i int, subscribe bool) (bool, error) {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return false, err
		}
		conns[i] = nc
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
		rc := &rawClient{nc: nc, br: bufio.NewReader(nc), v: packet.V5}
		cp := &packet.Connect{Version: packet.V5, ClientID: fmt.Sprintf("mass-%d", i), KeepAlive: 60}
		cp.Properties.SessionExpiryInterval = 3600
		cp.Properties.Present.Add(packet.PropSessionExpiryInterval)
		if err := rc.write(cp); err != nil {
			return false, err
		}

		p, err := packet.ReadPacket(rc.br, packet.V5, 0)
		if err != nil {
			return false, err
		}
		ack, ok := p.(*packet.Connack)
		if !ok || ack.ReasonCode != 0 {
			return false, fmt.Errorf("client %d: %v", i, p)
		}
		if subscribe {
			if err := rc.write(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: fmt.Sprintf("mass/%d", i), QoS: 1}}}); err != nil {
				return false, err
			}
			if p, err := packet.ReadPacket(rc.br, packet.V5, 0); err != nil {
				return false, err
			} else if sa, ok := p.(*packet.Suback); !ok || sa.ReasonCodes[0] != 1 {
				return false, fmt.Errorf("client %d: SUBACK %v", i, p)
			}
		}
		return ack.SessionPresent, nil
	}
	start := time.Now()
	if err := each(func(i int) error { _, err := connect(c.addr(0), i, true); return err }); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients connected and subscribed to gateway A in %v", clients, time.Since(start))
	c.gateways[0].Kill()
	start = time.Now()
	var missing atomic.Int64
	if err := each(func(i int) error {
		conns[i].Close()
		present, err := connect(c.addr(1), i, false)
		if err == nil && !present {
			missing.Add(1)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("%d clients reconnected to gateway B in %v (%.0f/s)", clients, took, float64(clients)/took.Seconds())
	if n := missing.Load(); n > 0 {
		t.Fatalf("%d clients found no session on gateway B", n)
	}
	if took > 30*time.Second {
		t.Fatalf("mass reconnect took %v, bound 30 s", took)
	}
}
