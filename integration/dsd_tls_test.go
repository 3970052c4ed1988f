package integration

import (
	"bytes"
	"context"
	"fmt"
	"github.com/stratamq/strata/internal/testutil/wait"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/internal/testutil/testpki"
)

// TestGatewayDSDMutualTLS: dsd requires client certificates; a gateway
// with gateway.dsd_tls and a certificate mapped to the gateway role
// registers under its certificate's name, opens sessions and stores
// messages over mTLS end to end. A gateway whose certificate maps to the
// service role is refused on the GatewayLink, so it serves no client.
func TestGatewayDSDMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pki := testpki.New(t)
	dir := t.TempDir()
	dsdCert, dsdKey := pki.Issue(t, "dsd", true)
	writeConfig := func(name, gwCert, gwKey string) string {
		path := filepath.Join(dir, name)
		cfg := fmt.Sprintf(`
[dsd.tls]
certfile = %q
keyfile = %q
cacertfile = %q
[dsd.tls.roles]
"gw-east" = "gateway"

[gateway.dsd_tls]
enable = true
certfile = %q
keyfile = %q
cacertfile = %q
`, dsdCert, dsdKey, pki.CAFile, gwCert, gwKey, pki.CAFile)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	gwCert, gwKey := pki.Issue(t, "gw-east", false)
	conf := writeConfig("strata.toml", gwCert, gwKey)
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(dir, "data"), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)
	g, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: d.GRPCAddr, ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop(10 * time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s\ndsd log:\n%s", tail(g.Log(), 40), tail(d.Log(), 40))
		}
	}()
	if g.Addrs["gateway_id"] != "gw-east" || !strings.Contains(g.Log(), "registered with dsd") {
		t.Fatalf("the gateway did not register as its certificate's name gw-east: %v", g.Addrs)
	}
	addr := g.Addrs["tcp.default"]
	sub := dialSub(t, ctx, addr, pahoOpts{clientID: "tls-sub", expiry: 300})
	defer sub.c.Disconnect(&paho.Disconnect{})
	sub.subscribe(t, ctx, "tls/#", 1)
	pub := dialSub(t, ctx, addr, pahoOpts{clientID: "tls-pub", cleanStart: true})
	defer pub.c.Disconnect(&paho.Disconnect{})
	res, err := pub.c.Publish(ctx, &paho.Publish{Topic: "tls/a", QoS: 1, Payload: []byte("over mTLS")})
	if err != nil || res.ReasonCode != 0 {
		t.Fatalf("PUBLISH QoS 1 over the gateway's mTLS link to dsd: %+v, %v", res, err)
	}
	sub.waitCount(t, 1, 10*time.Second)
	if m := sub.messages()[0]; m.payload != "over mTLS" {
		t.Fatalf("delivered %+v", m)
	}

	// The service role may not hold a GatewayLink: such a gateway never
	// registers, so it never opens its listeners; its log says why.
	svcCert, svcKey := pki.Issue(t, "reporting", false)
	var out syncBuffer
	svc := exec.CommandContext(ctx, bins.Path("gateway"), "--dsd", d.GRPCAddr, "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--config", writeConfig("service.toml", svcCert, svcKey))
	svc.Stdout, svc.Stderr = &out, &out
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Process.Kill(); _ = svc.Wait() }()
	wait.For(t, 30*time.Second, "a gateway with a service certificate refused registration (PermissionDenied)", func() bool {
		log := out.String()
		return strings.Contains(log, "cannot register with dsd") && strings.Contains(log, "PermissionDenied")
	})
	if strings.Contains(out.String(), "gateway ready") {
		t.Fatalf("a gateway with a service certificate became ready:\n%s", tail(out.String(), 20))
	}
}

// syncBuffer is a bytes.Buffer a child process writes to while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
