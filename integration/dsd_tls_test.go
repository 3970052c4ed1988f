package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/internal/testpki"
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

	// The service role may not hold a GatewayLink.
	svcCert, svcKey := pki.Issue(t, "reporting", false)
	svc, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: d.GRPCAddr, ConfigFile: writeConfig("service.toml", svcCert, svcKey)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop(10 * time.Second)
	if log := svc.Log(); !strings.Contains(log, "cannot register with dsd") || !strings.Contains(log, "PermissionDenied") {
		t.Fatalf("a gateway with a service certificate: want its registration refused (PermissionDenied):\n%s", tail(log, 20))
	}
}
