package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scenario is one mqttload workload, run with identical flags on each
// system, and the figures taken from its report.
type scenario struct {
	Name string
	// Title says what runs, for the table; %d is replaced by the in-flight
	// window.
	Title string
	// flags builds mqttload's flags (without --addr).
	flags func(cfg Config) []string
	// metrics are the figures the table shows, in order.
	metrics []metric
	// run, when set, runs the scenario instead of one mqttload with flags;
	// it returns the report and the CPU time of the clients it ran.
	run func(ctx context.Context, cfg Config, addr, base string) (*loadReport, time.Duration, error)
	// how says what run does, for the results.
	how string
}

// metric is one figure of a report.
type metric struct {
	Name string
	// Unit formats the value: "msgs/s", "ms", "s" or "%".
	Unit string
	// HigherBetter says which way is better, for reading the ratio.
	HigherBetter bool
	get          func(r *loadReport) float64
}

// label is the metric's name with its unit where the value shows none.
func (m metric) label() string {
	if m.Unit == "ms" {
		return m.Name + " (ms)"
	}
	return m.Name
}

func (s *scenario) args(cfg Config, addr string) []string {
	return append([]string{"--addr", addr, "--json", "--progress", "0"}, s.flags(cfg)...)
}

func (s *scenario) title(cfg Config) string {
	if strings.Contains(s.Title, "%d") {
		return fmt.Sprintf(s.Title, cfg.Inflight)
	}
	return s.Title
}

// brief is a one-line summary for the progress log.
func (s *scenario) brief(r *loadReport) string {
	var parts []string
	for _, m := range s.metrics {
		parts = append(parts, fmt.Sprintf("%s %s", m.label(), formatValue(m.get(r), m.Unit)))
	}
	return strings.Join(parts, ", ")
}

func dur(d time.Duration) string { return d.String() }

func itoa(n int) string { return strconv.Itoa(n) }

var (
	ackedRate     = metric{"acked msgs/s", "msgs/s", true, func(r *loadReport) float64 { return r.PublishRate }}
	deliveredRate = metric{"delivered msgs/s", "msgs/s", true, func(r *loadReport) float64 { return r.DeliverRate }}
	ackP50        = metric{"publish→ack p50", "ms", false, func(r *loadReport) float64 { return r.AckLatency.P50 }}
	ackP99        = metric{"publish→ack p99", "ms", false, func(r *loadReport) float64 { return r.AckLatency.P99 }}
	deliverP50    = metric{"publish→delivery p50", "ms", false, func(r *loadReport) float64 { return r.DeliverLatency.P50 }}
	deliverP99    = metric{"publish→delivery p99", "ms", false, func(r *loadReport) float64 { return r.DeliverLatency.P99 }}
)

// scenarios are the workloads, in the order they run. The QoS 1 scenarios
// with few publishers use --inflight and give each publisher that many
// topics (--devices), so the window is full: mqttload keeps at most one
// message in flight per topic. Fan-in takes its concurrency from the number
// of publishers instead, each publishing one message at a time like a small
// device. Delivery latency is shown where delivery keeps up with publishing;
// in the flat-out scenarios it would measure the backlog, which grows with
// the length of the run, and the delivered rate says more. Subscribers are
// durable sessions (--durable: Session Expiry 3600 s), as Strata's clients
// are meant to be; the replay scenario's are by construction.
var scenarios = []scenario{
	{
		Name:  "qos0",
		Title: "QoS 0 throughput: 4 publishers → 1 subscriber, flat out",
		flags: func(cfg Config) []string {
			return []string{"--qos", "0", "--publishers", "4", "--subscribers", "1", "--durable", "--duration", dur(cfg.Duration), "--drain", "30s"}
		},
		metrics: []metric{
			{"published msgs/s", "msgs/s", true, func(r *loadReport) float64 { return r.PublishRate }},
			deliveredRate,
			{"delivered", "%", true, func(r *loadReport) float64 { return pct(r.Unique, r.Published) }},
		},
	},
	{
		Name:  "qos1",
		Title: "QoS 1 throughput: 8 publishers × %d in flight → 1 subscriber",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "8", "--inflight", itoa(cfg.Inflight), "--devices", itoa(8 * cfg.Inflight),
				"--subscribers", "1", "--durable", "--duration", dur(cfg.Duration), "--drain", "60s"}
		},
		metrics: []metric{ackedRate, deliveredRate, ackP50, ackP99},
	},
	{
		Name:  "pub10",
		Title: "QoS 1 publish, 10 publishers flat out (one in flight each, 100-byte payloads), no subscriber",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "10", "--inflight", "1", "--payload", "100", "--subscribers", "0", "--duration", dur(cfg.Duration)}
		},
		metrics: []metric{ackedRate, ackP50, ackP99},
	},
	{
		Name:  "pub100",
		Title: "QoS 1 publish, 100 publishers flat out (one in flight each, 100-byte payloads), no subscriber",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "100", "--inflight", "1", "--payload", "100", "--subscribers", "0", "--duration", dur(cfg.Duration)}
		},
		metrics: []metric{ackedRate, ackP50, ackP99},
	},
	{
		Name:  "pub1x32",
		Title: "QoS 1 publish, 1 publisher × 32 in flight (100-byte payloads), no subscriber",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "1", "--inflight", "32", "--devices", "32", "--payload", "100", "--subscribers", "0", "--duration", dur(cfg.Duration)}
		},
		metrics: []metric{ackedRate, ackP50, ackP99},
	},
	{
		Name:  "latency",
		Title: "QoS 1 latency at a fixed 1,000 msgs/s: 4 publishers × 250/s (up to %d in flight) → 1 subscriber",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "4", "--rate", "250", "--inflight", itoa(cfg.Inflight), "--devices", itoa(4 * cfg.Inflight),
				"--subscribers", "1", "--durable", "--duration", dur(cfg.Duration), "--drain", "30s"}
		},
		metrics: []metric{ackedRate, ackP50, ackP99, deliverP50, deliverP99},
	},
	{
		Name:  "fanin",
		Title: "fan-in: 64 publishers, one message in flight each → 1 subscriber, QoS 1",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "64", "--inflight", "1", "--subscribers", "1", "--durable", "--duration", dur(cfg.Duration), "--drain", "60s"}
		},
		metrics: []metric{ackedRate, deliveredRate, ackP50, ackP99},
	},
	{
		Name:  "fanout",
		Title: "fan-out: 1 publisher × %d in flight → 32 subscribers, QoS 1",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "1", "--inflight", itoa(cfg.Inflight), "--devices", itoa(cfg.Inflight),
				"--subscribers", "32", "--durable", "--duration", dur(cfg.Duration), "--drain", "60s"}
		},
		metrics: []metric{ackedRate,
			{"deliveries/s (all subscribers)", "msgs/s", true, func(r *loadReport) float64 { return r.DeliverRate }},
			ackP99, deliverP50, deliverP99},
	},
	{
		Name:  "fanout1k",
		Title: "fan-out to 1,000 subscribers: 1 publisher at 20 msgs/s → 1,000 durable subscribers on one gateway, QoS 1",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "1", "--rate", "20", "--inflight", "8", "--devices", "8",
				"--subscribers", "1000", "--durable", "--duration", dur(cfg.Duration), "--drain", "60s"}
		},
		metrics: []metric{ackedRate,
			{"deliveries/s (all subscribers)", "msgs/s", true, func(r *loadReport) float64 { return r.DeliverRate }},
			deliverP50, deliverP99},
	},
	{
		Name:  "replay",
		Title: "offline-queue replay: a durable subscriber reconnects to its queue (QoS 1; filled by 8 publishers × %d in flight)",
		flags: func(cfg Config) []string {
			return []string{"--queued", itoa(cfg.Queued), "--qos", "1", "--publishers", "8", "--inflight", itoa(cfg.Inflight),
				"--devices", itoa(8 * cfg.Inflight), "--subscribers", "1", "--drain", "120s"}
		},
		metrics: replayMetrics,
	},
	{
		Name:  "replay-sub",
		Title: "offline-queue replay on one topic to an unmodified mosquitto_sub (MQTT 5, -c, QoS 1; filled by 8 publishers × 1 in flight)",
		run:   runReplaySub,
		how: "`mosquitto_sub -V mqttv5 -c -i <id> -x 3600 -q 1 -t " + replaySubTopic + " -E` subscribes and leaves; " +
			"`mqttload --qos 1 --publishers 8 --inflight 1 --topic " + replaySubTopic + " --subscribers 0 --count <queued/8> --duration 0` queues; " +
			"the same `mosquitto_sub ... -C <queued>` is timed until it has printed them all",
		metrics: replayMetrics,
	},
	{
		Name:  "fleet",
		Title: "fleet latency: 1,000 devices sensors/{dev}/temp at 500 msgs/s in all (10 publishers × 50/s) → 1 subscriber on sensors/+/temp, QoS 1",
		flags: func(cfg Config) []string {
			return []string{"--qos", "1", "--publishers", "10", "--rate", "50", "--inflight", "8", "--devices", "1000",
				"--subscribers", "1", "--durable", "--duration", dur(cfg.Duration), "--drain", "30s"}
		},
		metrics: []metric{ackedRate, ackP99, deliverP50, deliverP99},
	},
}

var replayMetrics = []metric{
	{"queue fill, acked msgs/s", "msgs/s", true, func(r *loadReport) float64 { return r.PublishRate }},
	{"replay msgs/s", "msgs/s", true, func(r *loadReport) float64 { return r.Replay.MsgsPerSec }},
	{"first message after", "ms", false, func(r *loadReport) float64 { return r.Replay.FirstMs }},
	{"whole queue after", "s", false, func(r *loadReport) float64 { return r.Replay.DrainSeconds }},
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func scenarioNames() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.Name
	}
	return names
}

// selectScenarios returns the scenarios named in only (all when empty), in
// their run order.
func selectScenarios(only string) ([]*scenario, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	all := len(want) == 0
	var out []*scenario
	for i := range scenarios {
		if all || want[scenarios[i].Name] {
			out = append(out, &scenarios[i])
			delete(want, scenarios[i].Name)
		}
	}
	if len(want) > 0 {
		var unknown []string
		for n := range want {
			unknown = append(unknown, n)
		}
		return nil, fmt.Errorf("--only: unknown scenario(s) %v; known: %s", unknown, strings.Join(scenarioNames(), ","))
	}
	return out, nil
}

// loadReport is the part of mqttload's --json summary benchcmp reads.
type loadReport struct {
	PublishSeconds float64 `json:"publish_s"`
	Published      int64   `json:"published"`
	Acked          int64   `json:"acked"`
	Failed         int64   `json:"failed"`
	Unknown        int64   `json:"unknown"`
	Unique         int64   `json:"unique"`
	Violations     int64   `json:"violations"`
	Reconnects     int64   `json:"reconnects"`
	PublishRate    float64 `json:"publish_msgs_per_s"`
	DeliverRate    float64 `json:"deliver_msgs_per_s"`
	AckLatency     struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
	} `json:"ack_latency"`
	DeliverLatency struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
	} `json:"deliver_latency"`
	Replay *replayReport `json:"replay"`
	Config struct {
		QoS         int `json:"qos"`
		Subscribers int `json:"subscribers"`
	} `json:"config"`
	Interrupted bool   `json:"interrupted"`
	Error       string `json:"error"`
}

// replayReport is the replay part of mqttload's summary.
type replayReport struct {
	Queued       int64   `json:"queued"`
	Delivered    int64   `json:"delivered"`
	FirstMs      float64 `json:"first_ms"`
	DrainSeconds float64 `json:"drain_s"`
	MsgsPerSec   float64 `json:"msgs_per_s"`
	Complete     bool    `json:"complete"`
}

// problems lists what makes a report's figures incomplete: failed or
// unanswered publishes, QoS 1 messages not delivered to every subscriber,
// protocol violations, reconnects.
func (r *loadReport) problems() []string {
	var p []string
	if r.Failed+r.Unknown > 0 {
		p = append(p, fmt.Sprintf("%d failed and %d unanswered publishes", r.Failed, r.Unknown))
	}
	if r.Config.QoS > 0 && r.Replay == nil && r.Unique < r.Acked*int64(r.Config.Subscribers) {
		p = append(p, fmt.Sprintf("%d of %d acked messages delivered", r.Unique, r.Acked*int64(r.Config.Subscribers)))
	}
	if r.Replay != nil && !r.Replay.Complete {
		p = append(p, fmt.Sprintf("replay incomplete: %d of %d", r.Replay.Delivered, r.Replay.Queued))
	}
	if r.Violations > 0 {
		p = append(p, fmt.Sprintf("%d protocol violations", r.Violations))
	}
	if r.Reconnects > 0 {
		p = append(p, fmt.Sprintf("%d reconnects", r.Reconnects))
	}
	return p
}

// runLoad runs mqttload with args; its JSON report and stderr are kept
// under base (.json, .log).
func runLoad(ctx context.Context, bin string, args []string, base string) (*loadReport, time.Duration, error) {
	rep, cmd, err := runLoadCmd(ctx, bin, args, base)
	var cpu time.Duration
	if cmd != nil && cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return rep, cpu, err
}

func runLoadCmd(ctx context.Context, bin string, args []string, base string) (*loadReport, *exec.Cmd, error) {
	var stdout bytes.Buffer
	logf, err := os.Create(base + ".log")
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// On cancellation mqttload gets Ctrl-C's signal, ends its run and
	// prints the summary; it is killed only if it does not.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	runErr := cmd.Run()
	if err := os.WriteFile(base+".json", stdout.Bytes(), 0o644); err != nil {
		return nil, nil, err
	}
	if ctx.Err() != nil {
		return nil, cmd, ctx.Err()
	}
	var rep loadReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return nil, cmd, fmt.Errorf("mqttload report (%v): %w; see %s.log", runErr, err, base) // lint:nowrap runErr (nil after a clean run) is context for the report error
	}
	if rep.Error != "" {
		return nil, cmd, fmt.Errorf("mqttload: %s; see %s.log", rep.Error, base)
	}
	if runErr != nil {
		return nil, cmd, fmt.Errorf("mqttload: %w; see %s.log", runErr, base)
	}
	return &rep, cmd, nil
}
