package integration

import (
	"bufio"
	"bytes"
	"context"
	"github.com/stratamq/strata/internal/testutil"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/gateway/packet"
)

// TestGateway starts dsd and the gateway binaries and runs MQTT clients
// against them in parallel: raw TCP (3.1.1 and 5), paho.golang, WebSocket,
// mosquitto_sub, and garbage on many connections.
func TestGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)
	// Anonymous clients on a WebSocket listener are opted into (its
	// allow_anonymous); from loopback, as on the tcp listener.
	cfgFile := filepath.Join(t.TempDir(), "strata.toml")
	if err := os.WriteFile(cfgFile, []byte("[listeners.ws.default]\nbind = \"127.0.0.1:0\"\nallow_anonymous = \"loopback\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: d.GRPCAddr, WSListen: "127.0.0.1:0", ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.Log())
		}
	}()
	addr := g.Addrs["tcp.default"]

	t.Run("clients", func(t *testing.T) {
		t.Run("keepalive-silent-dropped", func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr, packet.V311)
			c.connect(t, "silent", 2)
			start := time.Now()
			c.waitClosed(t, 10*time.Second)
			// 2 s × 0.75 × 2 = 3 s.
			if d := time.Since(start); d < 2900*time.Millisecond || d > 4500*time.Millisecond {
				t.Fatalf("silent client with keep-alive 2 s dropped after %v, want about 3 s", d)
			}
		})
		t.Run("keepalive-pinging-stays", func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr, packet.V5)
			c.connect(t, "pinger", 2)
			for range 6 {
				time.Sleep(time.Second) // models: a client that pings every second, inside its 2 s keep-alive
				c.send(t, &packet.Pingreq{})
				if _, ok := c.recv(t).(*packet.Pingresp); !ok {
					t.Fatal("no PINGRESP")
				}
			}
			c.send(t, &packet.Disconnect{})
			c.waitClosed(t, 5*time.Second)
		})
		t.Run("paho-v5", func(t *testing.T) {
			t.Parallel()
			testPaho(t, addr)
		})
		t.Run("raw-3.1.1", func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr, packet.V311)
			c.send(t, &packet.Connect{Version: packet.V311, KeepAlive: 10}) // empty id, clean session 0
			if ack, ok := c.recv(t).(*packet.Connack); !ok || byte(ack.ReasonCode) != packet.ConnectRefusedIdentifierRejected {
				t.Fatalf("empty client id without clean session: %+v, want CONNACK 0x02", ack)
			}
			c.waitClosed(t, 5*time.Second)
			c = dialRaw(t, addr, packet.V311)
			c.connect(t, "three-one-one", 10)
			c.send(t, &packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{{Filter: "a/+", QoS: 2}, {Filter: "a/#/b"}}})
			if ack, ok := c.recv(t).(*packet.Suback); !ok || ack.PacketID != 7 || ack.ReasonCodes[0] != 2 || ack.ReasonCodes[1] != 0x80 {
				t.Fatalf("SUBACK %+v", ack)
			}
			c.send(t, &packet.Disconnect{})
			c.waitClosed(t, 5*time.Second)
		})
		t.Run("websocket", func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			wc, _, err := websocket.Dial(ctx, "ws://"+g.Addrs["ws.default"]+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
			if err != nil {
				t.Fatal(err)
			}
			nc := websocket.NetConn(context.Background(), wc, websocket.MessageBinary)
			c := &rawClient{nc: nc, br: bufio.NewReader(nc), v: packet.V5}
			defer nc.Close()
			c.connect(t, "ws-client", 30)
			c.send(t, &packet.Pingreq{})
			if _, ok := c.recv(t).(*packet.Pingresp); !ok {
				t.Fatal("no PINGRESP over WebSocket")
			}
			c.send(t, &packet.Disconnect{})
			c.waitClosed(t, 5*time.Second)
		})
		t.Run("garbage", func(t *testing.T) {
			t.Parallel()
			testGarbage(t, addr)
		})
		t.Run("mosquitto_sub", func(t *testing.T) {
			t.Parallel()
			testMosquittoSub(t, addr)
		})
	})

	metrics := testutil.Metrics(t, g.Addrs["http"])
	if n := metricValue(metrics, "strata_gateway_keepalive_timeouts_total"); n < 1 {
		t.Errorf("strata_gateway_keepalive_timeouts_total = %v, want ≥ 1", n)
	}
	if n := metricValue(metrics, `strata_gateway_packets_received_total{type="PINGREQ"}`); n < 6 {
		t.Errorf("PINGREQ received = %v, want ≥ 6", n)
	}
	if err := g.Stop(10 * time.Second); err != nil {
		t.Errorf("gateway stop: %v\n%s", err, g.Log())
	}
}

func testPaho(t *testing.T, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	clientErr := make(chan error, 1)
	c := paho.NewClient(paho.ClientConfig{
		Conn:          nc,
		OnClientError: func(err error) { clientErr <- err },
		OnServerDisconnect: func(d *paho.Disconnect) {
			clientErr <- &serverDisconnect{d.ReasonCode}
		},
	})
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "paho-v5", CleanStart: true, KeepAlive: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ca.ReasonCode != 0 || ca.Properties.ReceiveMaximum == nil || *ca.Properties.ReceiveMaximum != 32 {
		t.Fatalf("CONNACK %+v", ca)
	}
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "fleet/+/speed", QoS: 1}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		t.Fatalf("SUBACK %+v, %v", sa, err)
	}
	// QoS 1 is acknowledged once dsd stored it.
	pr, err := c.Publish(ctx, &paho.Publish{Topic: "fleet/car1/speed", QoS: 1, Payload: []byte("42")})
	if pr == nil || pr.ReasonCode != 0 {
		t.Fatalf("QoS 1 PUBLISH: %+v, %v; want PUBACK 0x00", pr, err)
	}
	// Keep-alive 1 s: paho pings; the gateway (1.5 s) must not drop it.
	select {
	case err := <-clientErr:
		t.Fatalf("paho client error: %v", err)
	case <-time.After(3 * time.Second):
	}
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("paho client did not finish")
	}
}

type serverDisconnect struct{ code byte }

func (e *serverDisconnect) Error() string {
	return "server sent DISCONNECT " + strconv.Itoa(int(e.code))
}

// testGarbage opens 50 connections that send random bytes while a good
// client keeps pinging; the good client is never disturbed.
func testGarbage(t *testing.T, addr string) {
	good := dialRaw(t, addr, packet.V5)
	good.connect(t, "good-amid-garbage", 2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	closedByServer := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			junk := make([]byte, 1+rng.IntN(512))
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			_, _ = nc.Write(junk)
			_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.Copy(io.Discard, nc); err == nil {
				mu.Lock()
				closedByServer++
				mu.Unlock()
			}
		}()
	}
	for range 10 {
		time.Sleep(200 * time.Millisecond) // models: a well-behaved client pinging every 200 ms while the junk arrives
		good.send(t, &packet.Pingreq{})
		if _, ok := good.recv(t).(*packet.Pingresp); !ok {
			t.Fatal("good client: no PINGRESP")
		}
	}
	wg.Wait()
	if closedByServer < 45 {
		t.Errorf("only %d of 50 garbage connections were closed by the gateway within 2 s", closedByServer)
	}
	good.send(t, &packet.Pingreq{})
	good.recv(t)
	// A new client still connects.
	dialRaw(t, addr, packet.V311).connect(t, "after-garbage", 5)
}

// testMosquittoSub: mosquitto_sub (MQTT 5, keep-alive 5 s) connects and
// stays connected across its pings.
func testMosquittoSub(t *testing.T, addr string) {
	path, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Fatal("mosquitto_sub not installed: install Debian's mosquitto-clients (.ci/run does)")
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, "-V", "mqttv5", "-k", "5", "-h", host, "-p", port, "-t", "strata/test", "-i", "mosq-sub", "-d")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("mosquitto_sub exited: %v\n%s", err, out.String())
	case <-time.After(8 * time.Second): // past one ping and past 1.5 × 5 s
	}
	_ = cmd.Process.Signal(syscall.SIGTERM) // flushes its output, sends DISCONNECT
	<-exited
	log := out.String()
	if !strings.Contains(log, "received CONNACK (0)") || !strings.Contains(log, "received SUBACK") || !strings.Contains(log, "received PINGRESP") {
		t.Fatalf("mosquitto_sub did not connect, subscribe and ping:\n%s", log)
	}
}

// rawClient is an MQTT client made of the codec, for exact control.
type rawClient struct {
	nc net.Conn
	br *bufio.Reader
	v  packet.Version
}

func dialRaw(t *testing.T, addr string, v packet.Version) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{nc: nc, br: bufio.NewReader(nc), v: v}
}

func (c *rawClient) send(t *testing.T, p packet.Packet) {
	t.Helper()
	if err := c.write(p); err != nil {
		t.Fatal(err)
	}
}

// write sends one packet, for callers outside the test goroutine.
func (c *rawClient) write(p packet.Packet) error {
	b, err := p.Append(nil, c.v)
	if err != nil {
		return err
	}
	_, err = c.nc.Write(b)
	return err
}

func (c *rawClient) recv(t *testing.T) packet.Packet {
	t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := packet.ReadPacket(c.br, c.v, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *rawClient) connect(t *testing.T, id string, keepAlive uint16) {
	t.Helper()
	c.send(t, &packet.Connect{Version: c.v, ClientID: id, CleanStart: true, KeepAlive: keepAlive})
	if ack, ok := c.recv(t).(*packet.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
}

// waitClosed reads until the gateway closes the connection (DISCONNECT
// packets before the close are allowed).
func (c *rawClient) waitClosed(t *testing.T, within time.Duration) {
	t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(within))
	for {
		if _, err := packet.ReadPacket(c.br, c.v, 0); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection not closed within %v", within)
			}
			return
		}
	}
}

func metricValue(text, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
