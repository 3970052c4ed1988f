package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratamq/strata/internal/childproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSelectScenarios(t *testing.T) {
	all, err := selectScenarios("")
	if err != nil || len(all) != len(scenarios) {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	some, err := selectScenarios("replay, qos0")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range some {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"qos0", "replay"}) {
		t.Errorf("--only replay,qos0 selects %v, want [qos0 replay] (run order, nothing else)", names)
	}
	if _, err := selectScenarios("qos1,nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown scenario: %v", err)
	}
}

// Every scenario gives mqttload flags it accepts (checked by the same parse
// rules: each flag is one of mqttload's) and identical flags for both
// systems apart from --addr.
func TestScenarioFlags(t *testing.T) {
	cfg := defaultConfig()
	known := regexp.MustCompile(`^--(qos|publishers|subscribers|duration|drain|inflight|devices|rate|queued|durable|payload|topic)$`)
	for _, s := range scenarios {
		if s.run != nil {
			if s.flags != nil {
				t.Errorf("%s: both its own runner and mqttload flags", s.Name)
			}
			continue // not an mqttload run
		}
		a, b := s.args(cfg, "127.0.0.1:1"), s.args(cfg, "127.0.0.1:2")
		if len(a) != len(b) || a[1] == b[1] || !slices.Equal(a[2:], b[2:]) {
			t.Errorf("%s: %q vs %q", s.Name, a, b)
		}
		for _, f := range s.flags(cfg) {
			if strings.HasPrefix(f, "--") && !known.MatchString(f) {
				t.Errorf("%s: flag %q", s.Name, f)
			}
		}
		if s.Name != "qos0" && s.Name != "fanin" && !slices.Contains(s.flags(cfg), "--inflight") {
			t.Errorf("%s: QoS 1 scenario without --inflight", s.Name)
		}
		if len(s.metrics) == 0 || s.title(cfg) == "" || strings.Contains(s.title(cfg), "%") {
			t.Errorf("%s: title %q, %d metrics", s.Name, s.title(cfg), len(s.metrics))
		}
	}
}

func TestParseProcStat(t *testing.T) {
	busy, err := parseProcStat([]byte("cpu  100 5 50 9000 40 3 2 1 7 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n"))
	if err != nil || busy != (100+5+50+3+2+1)*clockTick {
		t.Errorf("busy %v, %v", busy, err)
	}
	if _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("bad first line accepted")
	}
	// The command name may hold spaces and parentheses.
	d, err := parsePidStat([]byte("1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0"))
	if err != nil || d != 325*clockTick {
		t.Errorf("pid stat: %v, %v", d, err)
	}
	if _, err := parsePidStat([]byte("1234 (x) S 1 2")); err == nil {
		t.Error("short pid stat accepted")
	}
	self, err := procCPU(os.Getpid())
	if err != nil || self < 0 {
		t.Errorf("own CPU time %v, %v", self, err)
	}
}

func TestUse(t *testing.T) {
	t0 := time.Unix(100, 0)
	me := os.Getpid()
	before := cpuSample{at: t0, busy: 10 * time.Second, procs: map[int]time.Duration{me: 0, 1: time.Second, 2: 0}}
	after := cpuSample{at: t0.Add(2 * time.Second), busy: 13 * time.Second,
		procs: map[int]time.Duration{me: 100 * time.Millisecond, 1: 2 * time.Second, 2: 500 * time.Millisecond}}
	// 3 s busy in 2 s: server (pid 1) 1 s, pid 2 0.5 s, benchcmp 0.1 s,
	// the load generator 0.4 s: 1 s by others.
	u := use(before, after, []int{1}, []int{1, 2}, 400*time.Millisecond)
	if !near(u.Server, 0.5) || !near(u.Other, 0.5) {
		t.Errorf("use %+v, want server 0.5, other 0.5 cores", u)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestParseMetricsAndInternals(t *testing.T) {
	const text = `# HELP strata_gateway_messages_received_total x
# TYPE strata_gateway_messages_received_total counter
strata_gateway_messages_received_total{qos="0"} 0
strata_gateway_messages_received_total{qos="1"} 1000
strata_gateway_messages_stored_total 1000
strata_gateway_dsd_call_seconds_count{call="commit"} 4
strata_gateway_dsd_call_seconds_count{call="store"} 250
strata_gateway_messages_sent_total{qos="1"} 2000
strata_ds_wal_fsyncs_total 125
strata_ds_egress_messages_total{shard="0"} 600
strata_ds_egress_messages_total{shard="1"} 400
strata_ds_egress_batches_total{shard="0"} 300
strata_ds_egress_batches_total{shard="1"} 200
`
	after := counters{}
	if err := parseMetrics(strings.NewReader(text), after); err != nil {
		t.Fatal(err)
	}
	if after[mReceived] != 1000 || after[mStores] != 250 || after[mDSDMsgs] != 1000 {
		t.Fatalf("counters %v", after)
	}
	var in internals
	in.add(counters{}, after)
	want := []string{"1,000", "1,000", "4.00", "0.12", "2.00", "2,000", "0.00"}
	if got := in.cells(); !slices.Equal(got, want) || len(internalsHeader) != len(want) {
		t.Errorf("cells %q, want %q", got, want)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{1234567.4, "msgs/s", "1,234,567"}, {999, "msgs/s", "999"}, {0.2449, "ms", "0.24"}, {16.44, "ms", "16.4"},
		{1686.2, "ms", "1,686"}, {63.4, "%", "63 %"}, {6.384, "s", "6.38 s"}, {0.875, "cores", "0.88"},
	} {
		if got := formatValue(c.v, c.unit); got != c.want {
			t.Errorf("formatValue(%v, %s) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

func fakeReport(rate, p99 float64) *loadReport {
	r := &loadReport{PublishRate: rate, DeliverRate: rate, Acked: 100, Unique: 100, Published: 100}
	r.Config.QoS, r.Config.Subscribers = 1, 1
	r.AckLatency.P99, r.DeliverLatency.P99 = p99, p99
	return r
}

func TestResultsTableAndMarkdown(t *testing.T) {
	cfg := defaultConfig()
	cfg.Runs = 3
	scens, _ := selectScenarios("qos1")
	res := newResults(cfg, scens)
	for i, v := range []float64{1000, 3000, 2000} {
		res.add(scens[0], "strata", fakeReport(v, 10), cpuUse{Server: 1, Other: 0.1 * float64(i)})
		res.add(scens[0], "mosquitto", fakeReport(4*v, 2), cpuUse{Server: 0.5, Other: 0})
	}
	short := fakeReport(5, 1)
	short.Unique = 90
	res.add(scens[0], "strata", short, cpuUse{Server: 1})
	rows := res.rows()
	if len(rows) != len(scens[0].metrics)+1 {
		t.Fatalf("%d rows", len(rows))
	}
	first := rows[0]
	if first.metric != "acked msgs/s" || first.cells[0] != "1,500 (5–3,000)" || first.cells[1] != "8,000 (4,000–12,000)" || first.ratio != "0.19" {
		t.Errorf("first row %+v", first)
	}
	if last := rows[len(rows)-1]; last.metric != "server CPU (cores)" || last.cells[0] != "1.00 (1.00–1.00)" || last.ratio != "2.00" {
		t.Errorf("CPU row %+v", last)
	}
	var md, text bytes.Buffer
	if err := res.writeMarkdown(&md, cfg); err != nil {
		t.Fatal(err)
	}
	if err := res.writeText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| scenario | metric | Strata | mosquitto | Strata ÷ mosquitto |",
		"| QoS 1 throughput: 8 publishers × 8 in flight → 1 subscriber | acked msgs/s | 1,500 (5–3,000) |",
		"`mqttload --qos 1 --publishers 8 --inflight 8 --devices 64",
		"strata: 90 of 100 acked messages delivered",
		"other processes used 0.00–0.20 cores",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if !strings.Contains(text.String(), "  publish→ack p99 (ms)") {
		t.Errorf("text table:\n%s", text.String())
	}
}

// script writes an executable shell script.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGroupStartAndStop(t *testing.T) {
	dir := t.TempDir()
	g := &group{log: io.Discard, stopTimeout: 5 * time.Second}
	ready := script(t, dir, "ready", `echo 'level=INFO msg="dsd ready" grpc=127.0.0.1:9 http=x' >&2; exec sleep 60`)
	_, line, err := g.start(t.Context(), "fake-dsd", filepath.Join(dir, "a.log"), childproc.DSDReady, ready)
	if err != nil || line != `level=INFO msg="dsd ready" grpc=127.0.0.1:9 http=x` {
		t.Fatalf("start: %q, %v", line, err)
	}
	dies := script(t, dir, "dies", `echo starting; exit 3`)
	if _, _, err := g.start(t.Context(), "dies", filepath.Join(dir, "b.log"), childproc.DSDReady, dies); err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "starting") {
		t.Errorf("a child that exits: %v", err)
	}
	if err := g.check(); err == nil || !strings.Contains(err.Error(), "dies exited") {
		t.Errorf("check after a child exited: %v", err)
	}
	if err := g.stopAll(); err == nil || strings.Contains(err.Error(), "fake-dsd") {
		t.Errorf("stopAll: %v (the exited child is reported, the stopped one is not)", err)
	}

	// A child that ignores SIGTERM is killed after the stop timeout.
	g = &group{log: io.Discard, stopTimeout: 200 * time.Millisecond}
	stubborn := script(t, dir, "stubborn", `trap '' TERM; echo 'msg="dsd ready" grpc=x' >&2; exec sleep 60`)
	if _, _, err := g.start(t.Context(), "stubborn", filepath.Join(dir, "c.log"), childproc.DSDReady, stubborn); err != nil {
		t.Fatal(err)
	}
	if err := g.stopAll(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stopAll of a child ignoring SIGTERM: %v", err)
	}
}

func TestRunLoadReadsTheReport(t *testing.T) {
	dir := t.TempDir()
	ok := script(t, dir, "ok", `echo '{"publish_msgs_per_s": 1234.5, "acked": 10, "unique": 20, "config": {"qos": 1, "subscribers": 2}, "replay": {"msgs_per_s": 99, "complete": true}}'`)
	rep, _, err := runLoad(t.Context(), ok, []string{"--json"}, filepath.Join(dir, "ok"))
	if err != nil || rep.PublishRate != 1234.5 || rep.Replay == nil || rep.Replay.MsgsPerSec != 99 {
		t.Fatalf("report %+v, %v", rep, err)
	}
	if p := rep.problems(); len(p) != 0 {
		t.Errorf("problems %v", p)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "ok.log"))
	if !strings.Contains(string(log), "# "+ok+" --json") {
		t.Errorf("log %q", log)
	}
	bad := script(t, dir, "bad", `echo '{"error": "connect: refused"}'; exit 1`)
	if _, _, err := runLoad(t.Context(), bad, nil, filepath.Join(dir, "bad")); err == nil || !strings.Contains(err.Error(), "connect: refused") {
		t.Errorf("failed run: %v", err)
	}
}

func TestMosquittoConf(t *testing.T) {
	conf := childproc.MosquittoConf(41000, "/tmp/x/mosquitto", mosquittoLimits...)
	for _, want := range []string{"listener 41000 127.0.0.1\n", "persistence true\n", "persistence_location /tmp/x/mosquitto/\n",
		"max_queued_messages 200000\n", "set_tcp_nodelay true\n", "allow_anonymous true\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q", want)
		}
	}
}

// The whole run against real mosquitto and fake Strata programs and load
// generator: the table and the Markdown come out, every child stops, and
// mosquitto writes its snapshot when stopped.
func TestRunEndToEnd(t *testing.T) {
	const mosq = "/usr/sbin/mosquitto"
	if _, err := os.Stat(mosq); err != nil {
		t.Skipf("needs %s (apt-get install mosquitto): %v", mosq, err)
	}
	bin := t.TempDir()
	script(t, bin, "dsd", `echo 'level=INFO msg="dsd ready" grpc=127.0.0.1:9 http=x' >&2; exec sleep 60`)
	script(t, bin, "gateway", `echo 'level=INFO msg="gateway ready" dsd=x http=127.0.0.1:11 tcp.default=127.0.0.1:10' >&2; exec sleep 60`)
	script(t, bin, "mqttload", `echo '{"publish_msgs_per_s": 100, "deliver_msgs_per_s": 100, "published": 5, "acked": 5, "unique": 5, "config": {"qos": 1, "subscribers": 1}}'`)
	cfg := defaultConfig()
	cfg.Bin, cfg.Mosquitto, cfg.Only, cfg.Out, cfg.TempDir = bin, mosq, "qos1,latency", filepath.Join(t.TempDir(), "out.md"), traversable(t)
	cfg.Runs = 2
	var stdout, log bytes.Buffer
	res, err := run(t.Context(), cfg, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	if err := writeResults(&stdout, cfg, res); err != nil {
		t.Fatal(err)
	}
	if len(res.Systems) != 2 || !strings.HasPrefix(res.Systems[1].Version, "mosquitto version") || res.Systems[0].Addr != "127.0.0.1:10" {
		t.Errorf("systems %+v", res.Systems)
	}
	if res.MosquittoDB <= 0 {
		t.Errorf("mosquitto.db size %d: persistence did not write a snapshot", res.MosquittoDB)
	}
	md, err := os.ReadFile(cfg.Out)
	if err != nil || !strings.Contains(string(md), "| acked msgs/s | 100 (100–100) | 100 (100–100) | 1.00 |") {
		t.Errorf("markdown (%v):\n%s", err, md)
	}
	if strings.Count(log.String(), "benchcmp: qos1 ") != 4 {
		t.Errorf("log:\n%s", log.String())
	}
}

// traversable returns a temporary directory that other users may pass
// through (mosquitto started as root runs as the user "mosquitto"), as
// /tmp itself is.
func traversable(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Cancelling (Ctrl-C) stops the children and returns.
func TestRunCancelled(t *testing.T) {
	bin := t.TempDir()
	started := filepath.Join(bin, "gateway-started")
	script(t, bin, "dsd", `echo 'level=INFO msg="dsd ready" grpc=127.0.0.1:9 http=x' >&2; exec sleep 60`)
	script(t, bin, "gateway", "touch "+started+"; exec sleep 60") // never ready
	script(t, bin, "mqttload", `exit 1`)
	cfg := defaultConfig()
	cfg.Bin, cfg.Mosquitto, cfg.TempDir = bin, "/bin/true", t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var log bytes.Buffer
	go func() {
		_, err := run(ctx, cfg, &log)
		done <- err
	}()
	// Cancel once dsd is up and benchcmp waits for the gateway.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before the gateway started: %v\n%s", err, log.String())
		case <-tick.C:
		}
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("cancelled run: %v", err)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("children still running after the run returned: %q", kids)
	}
}

// children lists this process's child processes (but ps itself).
func children(t *testing.T) []string {
	t.Helper()
	out, _ := exec.Command("ps", "-o", "args=", "--ppid", fmt.Sprint(os.Getpid())).Output()
	var kids []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.HasPrefix(l, "ps ") {
			kids = append(kids, l)
		}
	}
	return kids
}
