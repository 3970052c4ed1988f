package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// mosquittoSub is the unmodified client of the replay-sub scenario.
const mosquittoSub = "/usr/bin/mosquitto_sub"

// replaySubTopic is the one topic the replay-sub scenario queues on.
const replaySubTopic = "bench/replay-sub"

// runReplaySub is the replay-sub scenario: an unmodified mosquitto_sub
// (MQTT 5, clean start off, session expiry 1 h, QoS 1) subscribes to one
// topic and leaves; mqttload queues cfg.Queued messages on that topic
// (8 publishers, one in flight each); then the same mosquitto_sub reconnects
// and the time until it has printed every queued message is the replay.
func runReplaySub(ctx context.Context, cfg Config, addr, base string) (*loadReport, time.Duration, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	id := fmt.Sprintf("benchcmp-replay-sub-%d", time.Now().UnixNano())
	subArgs := []string{"-h", host, "-p", port, "-V", "mqttv5", "-c", "-i", id, "-x", "3600", "-q", "1", "-t", replaySubTopic}
	join := exec.CommandContext(ctx, mosquittoSub, append(subArgs, "-E")...)
	if out, err := join.CombinedOutput(); err != nil {
		return nil, 0, fmt.Errorf("mosquitto_sub -E: %w: %s", err, out)
	}
	per := (cfg.Queued + 7) / 8
	fill := []string{"--addr", addr, "--json", "--progress", "0", "--qos", "1", "--publishers", "8", "--inflight", "1",
		"--topic", replaySubTopic, "--subscribers", "0", "--count", itoa(per), "--duration", "0"}
	rep, fillCPU, err := runLoad(ctx, filepath.Join(cfg.Bin, "mqttload"), fill, base+"-fill")
	if err != nil {
		return nil, 0, err
	}
	queued := rep.Acked

	cmd := exec.CommandContext(ctx, mosquittoSub, append(subArgs, "-C", fmt.Sprint(queued))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errf, err := os.Create(base + "-sub.log")
	if err != nil {
		return nil, 0, err
	}
	defer errf.Close()
	cmd.Stderr = errf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	var first time.Duration
	var lines int64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if lines == 0 {
			first = time.Since(t0)
		}
		lines++
	}
	werr := cmd.Wait()
	elapsed := time.Since(t0)
	subCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if werr != nil && lines < queued {
		return nil, 0, fmt.Errorf("mosquitto_sub: %w after %d of %d messages; see %s-sub.log", werr, lines, queued, base)
	}
	rep.Config.Subscribers = 1
	rep.Replay = &replayReport{Queued: queued, Delivered: lines, FirstMs: float64(first) / float64(time.Millisecond),
		DrainSeconds: elapsed.Seconds(), MsgsPerSec: float64(lines) / elapsed.Seconds(), Complete: lines >= queued}
	return rep, fillCPU + subCPU, nil
}
