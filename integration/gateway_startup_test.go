package integration

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestGatewayFirstConnectSucceeds: a client that connects the moment the
// gateway's MQTT port first accepts gets CONNACK 0x00, not 0x88: the
// gateway listens only once it is registered with dsd (a new user's first
// mosquitto_pub right after start used to be refused).
func TestGatewayFirstConnectSucceeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	type started struct {
		g   *Gateway
		err error
	}
	ready := make(chan started, 1)
	go func() {
		g, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: d.GRPCAddr, MQTTListen: addr})
		ready <- started{g, err}
	}()
	defer func() {
		s := <-ready
		if s.err != nil {
			t.Error(s.err)
			return
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", s.g.Log())
		}
		_ = s.g.Stop(10 * time.Second)
	}()

	// Dial until the port accepts, then CONNECT at once.
	var nc net.Conn
	if !wait.Until(30*time.Second, func() bool {
		nc, err = net.DialTimeout("tcp", addr, time.Second)
		return err == nil
	}) {
		t.Fatalf("the gateway never accepted on %s: %v", addr, err)
	}
	defer nc.Close()
	b, err := (&packet.Connect{Version: packet.V5, ClientID: "first", CleanStart: true}).Append(nil, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := packet.ReadPacket(bufio.NewReader(nc), packet.V5, 0)
	if err != nil {
		t.Fatalf("no CONNACK: %v", err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("first CONNECT right after the port opened: got %+v, want CONNACK 0x00", p)
	}
}
