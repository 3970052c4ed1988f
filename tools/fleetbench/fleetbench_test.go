package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratamq/strata/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS([]byte("Name:\tgateway\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads: 8\n"))
	if err != nil || got != 12345 {
		t.Errorf("VmRSS %d, %v", got, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Error("status without VmRSS accepted")
	}
	self, err := rssKiB(os.Getpid())
	if err != nil || self <= 0 {
		t.Errorf("own RSS %d, %v", self, err)
	}
}

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{"--sessions", "300", "--sources", "2", "--kill", "--pids", "1,2"}, &stderr)
	if err != nil || cfg.Sessions != 300 || cfg.Sources != 2 || !cfg.Kill || len(cfg.Pids) != 2 {
		t.Errorf("cfg %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{{"--sessions", "0"}, {"--sources", "300"}, {"--addr", "x:1", "--kill"}, {"--pids", "a"}} {
		if _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	conf := strataConf(100000)
	for _, want := range []string{"max_connections_per_address = 0", `max_conn_rate = "1000000/s"`, "max_link_entries = 800000"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
}

// buildStrata builds dsd and the gateway into a temporary directory.
func buildStrata(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "./dsd/cmd/dsd", "./gateway/cmd/gateway")
	cmd.Dir = testutil.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// A small fleet end to end against real dsd and gateway processes: every
// device connects and subscribes, the gateway is killed and restarted, a
// message to each device's topic is published while the devices are away,
// and every device gets it when it reconnects.
func TestFleetKillAndReconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts dsd and a gateway")
	}
	bin := buildStrata(t)
	cfg := defaultConfig()
	cfg.Bin, cfg.Sessions, cfg.Sources, cfg.Dials, cfg.Kill = bin, 200, 2, 16, true
	cfg.Settle, cfg.Timeout, cfg.TempDir = 100*time.Millisecond, 2*time.Minute, t.TempDir()
	cfg.Pprof = filepath.Join(t.TempDir(), "heap.pprof")
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		cfg.Mosquitto = "/usr/sbin/mosquitto"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := run(ctx, cfg, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	s := res.Systems[0]
	if s.Name != "Strata" || s.ConnectRate <= 0 || len(s.Procs) != 2 || s.GatewayGoroutines <= 0 {
		t.Errorf("Strata result %+v", s)
	}
	rr := res.Reconnect
	if rr == nil || rr.Connected != 200 || rr.SessionPresent != 200 || rr.Received != 200 || rr.Lost != 0 {
		t.Errorf("reconnect %+v\n%s", rr, log.String())
	}
	if fi, err := os.Stat(cfg.Pprof); err != nil || fi.Size() == 0 {
		t.Errorf("heap profile: %v", err)
	}
	if cfg.Mosquitto != "" && (len(res.Systems) != 2 || res.Systems[1].ConnectRate <= 0) {
		t.Errorf("mosquitto result missing: %+v", res.Systems)
	}
	var md bytes.Buffer
	if err := res.writeMarkdown(&md); err != nil || !strings.Contains(md.String(), "| lost | 0 |") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
	if kids, _ := exec.Command("ps", "-o", "args=", "--ppid", strconv.Itoa(os.Getpid())).Output(); strings.Contains(string(kids), bin) {
		t.Errorf("children still running: %s", kids)
	}
}
