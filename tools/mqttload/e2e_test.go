package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/testutil/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mosquittoBin = "/usr/sbin/mosquitto"

// startMosquitto runs Debian's broker on a free loopback port with
// persistence in a temporary directory, a queue large enough for the tests
// (mosquitto's default max_queued_messages is 1000) and Nagle's algorithm
// off (with it on, pipelined PUBACKs wait for the client's delayed ACK:
// about 40 ms each time with --inflight).
func startMosquitto(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		t.Skipf("end-to-end test needs %s (apt-get install mosquitto): %v", mosquittoBin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 100000\nset_tcp_nodelay true\n", port, dir)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(mosquittoBin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", log.String())
		}
	})
	wait.For(t, 10*time.Second, "mosquitto to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// runArgs parses args as the command line would and runs in-process.
func runArgs(t *testing.T, addr string, args ...string) Report {
	t.Helper()
	cfg, err := parseFlags(append([]string{"--addr", addr, "--progress", "0", "--check"}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	rep, err := run(t.Context(), cfg, &stderr)
	if err != nil {
		t.Fatalf("run %q: %v\n%s", args, err, stderr.String())
	}
	if rep.Check == nil {
		t.Fatal("no check report")
	}
	t.Logf("%q: acked %d, delivered %d, %.0f msgs/s, ack p50 %.3f ms p99 %.3f ms, delivery p50 %.3f ms p99 %.3f ms",
		args, rep.Acked, rep.Delivered, rep.PublishRate, rep.AckLatency.P50, rep.AckLatency.P99, rep.DeliverLatency.P50, rep.DeliverLatency.P99)
	if !rep.Check.OK || rep.Check.Lost != 0 || rep.Check.QoS2Duplicates != 0 {
		t.Errorf("%q: checker: %s\n%s", args, rep.Check.Summary, stderr.String())
	}
	return rep
}

func TestMosquittoLive(t *testing.T) {
	addr := startMosquitto(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"qos1", []string{"--qos", "1", "--count", "2000", "--publishers", "4", "--subscribers", "2", "--devices", "8"}},
		{"qos2", []string{"--qos", "2", "--count", "1500", "--publishers", "4", "--subscribers", "2"}},
		{"qos1-inflight", []string{"--qos", "1", "--inflight", "8", "--count", "3000", "--publishers", "2", "--subscribers", "2", "--devices", "16"}},
		{"qos2-inflight", []string{"--qos", "2", "--inflight", "4", "--count", "1500", "--publishers", "2", "--devices", "8"}},
		{"qos1-inflight-mqttrec", []string{"--pub-client", "mqttrec", "--qos", "1", "--inflight", "4", "--count", "1500", "--publishers", "2", "--devices", "4"}},
		{"qos1-mqtt3", []string{"--mqtt", "3", "--qos", "1", "--count", "1000", "--publishers", "2", "--subscribers", "2"}},
		{"qos2-mqttrec-publishers", []string{"--pub-client", "mqttrec", "--qos", "2", "--count", "1000", "--publishers", "2"}},
		{"qos0-rate", []string{"--qos", "0", "--count", "200", "--rate", "400", "--publishers", "2"}},
		{"retained", []string{"--qos", "1", "--retain", "--count", "200", "--publishers", "2", "--devices", "6"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := runArgs(t, addr, c.args...)
			cfg := rep.Config
			want := int64(cfg.Count * cfg.Publishers)
			if rep.Published != want || rep.Unknown != 0 || rep.Failed != 0 {
				t.Errorf("published %d unknown %d failed %d, want %d, 0, 0", rep.Published, rep.Unknown, rep.Failed, want)
			}
			if cfg.QoS > 0 && (rep.Acked != want || rep.Unique != want*int64(cfg.Subscribers)) {
				t.Errorf("acked %d, unique deliveries %d; want %d and %d", rep.Acked, rep.Unique, want, want*int64(cfg.Subscribers))
			}
			if cfg.QoS > 0 && (rep.AckLatency.P50 <= 0 || rep.AckLatency.P99 < rep.AckLatency.P50) {
				t.Errorf("ack latency %+v", rep.AckLatency)
			}
			if rep.DeliverLatency.P50 <= 0 || rep.PublishRate <= 0 || rep.DeliverRate <= 0 {
				t.Errorf("delivery latency %+v, rates %.0f %.0f", rep.DeliverLatency, rep.PublishRate, rep.DeliverRate)
			}
			if cfg.Retain && (rep.RetainedWant != int64(cfg.Devices) || rep.RetainedGot != rep.RetainedWant || rep.Check.RetainedBad != 0) {
				t.Errorf("retained: got %d of %d, %d bad", rep.RetainedGot, rep.RetainedWant, rep.Check.RetainedBad)
			}
		})
	}
}

// A durable subscriber that goes offline mid-run gets what was published
// meanwhile, at QoS 1 and 2, in MQTT 5.0 and 3.1.1.
func TestMosquittoDurableOffline(t *testing.T) {
	addr := startMosquitto(t)
	for _, args := range [][]string{
		{"--qos", "1"},
		{"--qos", "2"},
		{"--qos", "1", "--mqtt", "3"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			// A count, not a duration: on a loaded machine publishing may
			// stall, and the offline window must still fall inside it.
			args = append(args, "--durable", "--publishers", "2", "--subscribers", "2", "--rate", "1000",
				"--count", "1500", "--sub-offline-at", "300ms", "--sub-offline-for", "500ms", "--drain", "30s")
			rep := runArgs(t, addr, args...)
			if rep.Reconnects != 2 || rep.SessionsLost != 0 || rep.Unique != 2*rep.Acked || rep.Acked != 3000 {
				t.Errorf("reconnects %d, sessions lost %d, unique %d of 2×%d", rep.Reconnects, rep.SessionsLost, rep.Unique, rep.Acked)
			}
		})
	}
}

// Offline-queue replay: the queue fills while the subscribers are away, and
// all of it arrives after they reconnect.
func TestMosquittoQueued(t *testing.T) {
	addr := startMosquitto(t)
	rep := runArgs(t, addr, "--queued", "5000", "--publishers", "4", "--subscribers", "2", "--history", filepath.Join(t.TempDir(), "h.jsonl"))
	r := rep.Replay
	if r == nil || !r.Complete || r.Queued != 5000 || r.Delivered != 10000 || r.MsgsPerSec <= 0 || r.DrainSeconds <= 0 {
		t.Fatalf("replay %+v", r)
	}
	t.Logf("replay of 5000 queued messages to 2 subscribers: %.0f msgs/s, drained in %.3fs", r.MsgsPerSec, r.DrainSeconds)
}

// The command line: --json and --history, the history judged again from the
// file, and Ctrl-C (a cancelled context) still printing the summary.
func TestMainJSONHistoryAndInterrupt(t *testing.T) {
	addr := startMosquitto(t)
	hist := filepath.Join(t.TempDir(), "history.jsonl")
	var stdout bytes.Buffer
	code := mainErr(t.Context(), []string{"--addr", addr, "--count", "300", "--publishers", "2", "--progress", "0",
		"--json", "--history", hist, "--check"}, &stdout, io.Discard)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stdout.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.Acked != 600 || rep.Check == nil || !rep.Check.OK {
		t.Fatalf("JSON summary %s: %v", stdout.String(), err)
	}
	f, err := os.Open(hist)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	events, err := checker.ReadJSONLines(f)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[checker.Kind]int{}
	for _, e := range events {
		kinds[e.Kind]++
	}
	if kinds[checker.Invoke] != 600 || kinds[checker.Ack] != 600 || kinds[checker.Deliver] != 600 || kinds[checker.Connack] != 3 ||
		kinds[checker.Subscribe] != 1 || kinds[checker.Disconnect] != 1 {
		t.Fatalf("history kinds %v", kinds)
	}
	if r := checker.Check(events, checker.Options{}); !r.OK(checker.Options{}) {
		t.Fatalf("history from file: %v", r)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(500*time.Millisecond, cancel)
	stdout.Reset()
	start := time.Now()
	code = mainErr(ctx, []string{"--addr", addr, "--duration", "1h", "--rate", "100", "--progress", "0"}, &stdout, io.Discard)
	if code != 0 || !strings.Contains(stdout.String(), "interrupted") || time.Since(start) > 10*time.Second {
		t.Fatalf("interrupted run: exit %d after %v:\n%s", code, time.Since(start), stdout.String())
	}
}
