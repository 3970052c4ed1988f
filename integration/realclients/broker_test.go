package realclients

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/integration"
	"github.com/stratamq/strata/internal/childproc"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// bins are the dsd and gateway binaries, built once (nil against mosquitto).
var bins integration.Binaries

// brokerEnv picks the broker the clients run against: Strata, or
// mosquitto to check the client scripts themselves.
const brokerEnv = "STRATA_REALCLIENTS_BROKER"

func againstMosquitto() bool { return os.Getenv(brokerEnv) == "mosquitto" }

func TestMain(m *testing.M) {
	if againstMosquitto() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "strata-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err = integration.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// broker is what the clients connect to: its MQTT (TCP) address and its
// WebSocket URL, and a restart that keeps both and every durable session.
type broker struct {
	name    string
	tcp     string // host:port
	ws      string // ws://host:port/mqtt
	restart func(t *testing.T)
	// away waits until the broker has recorded the end of a client's
	// connection (a client's DISCONNECT has no answer; Strata's gateway
	// tells dsd a moment later). Messages stored before that may have been
	// sent to the old connection and go with DUP on resume.
	away func(t *testing.T, clientID string)
}

// startBroker starts Strata (dsd and one gateway with a TCP and a WebSocket
// listener), or mosquitto when STRATA_REALCLIENTS_BROKER=mosquitto; it is
// stopped when the test ends.
func startBroker(t *testing.T, ctx context.Context) *broker {
	t.Helper()
	if againstMosquitto() {
		return startMosquitto(t, ctx)
	}
	return startStrata(t, ctx)
}

// startStrata starts dsd and a gateway; restart stops the gateway (SIGTERM)
// and starts a new one on the same addresses and dsd.
func startStrata(t *testing.T, ctx context.Context) *broker {
	t.Helper()
	dir := t.TempDir()
	d, err := integration.StartDSD(ctx, bins, integration.DSDConfig{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	// Anonymous WebSocket clients from loopback are opted into, as on the
	// TCP listener, and so are pages from any loopback port (the browser
	// test's page comes from its own HTTP server, another origin).
	cfg := filepath.Join(dir, "gateway.toml")
	ws := "[listeners.ws.default]\nbind = \"127.0.0.1:0\"\nallow_anonymous = \"loopback\"\nallowed_origins = [\"127.0.0.1:*\"]\n"
	if err := os.WriteFile(cfg, []byte(ws), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := integration.StartGateway(ctx, bins, integration.GatewayConfig{DSDAddr: d.GRPCAddr, ConfigFile: cfg, WSListen: "127.0.0.1:0"})
	if err != nil {
		_ = d.Stop(10 * time.Second)
		t.Fatal(err)
	}
	var logs []string // the logs of the gateways stopped by restart
	t.Cleanup(func() {
		_ = g.Stop(10 * time.Second)
		_ = d.Stop(10 * time.Second)
		if t.Failed() {
			for i, l := range append(logs, g.Log()) {
				t.Logf("gateway %d log:\n%s", i, tail(l, 40))
			}
			t.Logf("dsd log:\n%s", tail(d.Log(), 20))
		}
	})
	b := &broker{name: "strata", tcp: g.Addrs["tcp.default"], ws: "ws://" + g.Addrs["ws.default"] + "/mqtt"}
	b.away = func(t *testing.T, clientID string) {
		t.Helper()
		c, err := client.Dial(d.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wait.For(t, 10*time.Second, clientID+" disconnected in dsd", func() bool {
			s, err := c.Sessions().GetSession(context.Background(), &dsdv1.GetSessionRequest{ClientId: clientID})
			return err == nil && !s.GetSession().GetRecord().GetConnected()
		})
	}
	b.restart = func(t *testing.T) {
		t.Helper()
		tcp, ws := g.Addrs["tcp.default"], g.Addrs["ws.default"]
		if err := g.Stop(10 * time.Second); err != nil {
			t.Fatalf("gateway stop: %v", err)
		}
		logs = append(logs, g.Log())
		g, err = integration.StartGateway(ctx, bins, integration.GatewayConfig{DSDAddr: d.GRPCAddr, ConfigFile: cfg, MQTTListen: tcp, WSListen: ws})
		if err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// startMosquitto starts Debian's mosquitto with persistence, a TCP and a
// WebSocket listener; restart stops it (SIGTERM writes its persistence
// file) and starts it again on the same ports.
func startMosquitto(t *testing.T, ctx context.Context) *broker {
	t.Helper()
	const bin = "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=mosquitto needs %s: apt-get install mosquitto", brokerEnv, bin)
	}
	dir := filepath.Join(t.TempDir(), "mosquitto")
	if err := childproc.MosquittoDir(dir); err != nil {
		t.Fatal(err)
	}
	tcpPort, err := childproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	wsPort, err := childproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	// socket_domain ipv4: without it, libwebsockets' listener on
	// 127.0.0.1 fails to start about one time in three here.
	body := childproc.MosquittoConf(tcpPort, dir, fmt.Sprintf("listener %d 127.0.0.1", wsPort), "protocol websockets", "socket_domain ipv4")
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &broker{name: "mosquitto", tcp: net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort)), ws: fmt.Sprintf("ws://127.0.0.1:%d/mqtt", wsPort)}
	var p *childproc.Proc
	start := func(t *testing.T, n int) {
		t.Helper()
		logPath := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.log", n))
		p, _, err = childproc.Start(ctx, "mosquitto", logPath, nil, 10*time.Second, bin, "-c", conf)
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{b.tcp, net.JoinHostPort("127.0.0.1", strconv.Itoa(wsPort))} {
			if err := childproc.WaitListening(ctx, p, addr, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	start(t, 0)
	restarts := 0
	t.Cleanup(func() {
		_ = p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", childproc.Tail(p.LogPath()))
		}
	})
	b.restart = func(t *testing.T) {
		t.Helper()
		if err := p.Stop(10 * time.Second); err != nil {
			t.Fatalf("mosquitto stop: %v", err)
		}
		restarts++
		start(t, restarts)
	}
	return b
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
