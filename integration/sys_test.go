package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSysTopicsMosquittoSub: Debian's mosquitto_sub (MQTT 5) subscribes to
// $SYS/# on the real gateway with gateway.sys_interval 200ms and gets the
// retained values at once, then live ones that count it, under
// $SYS/brokers/{--gateway-id}/ and mosquitto's $SYS/broker/ names.
func TestSysTopicsMosquittoSub(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Fatalf("mosquitto_sub not found (apt-get install mosquitto-clients): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cfgFile := filepath.Join(t.TempDir(), "strata.toml")
	if err := os.WriteFile(cfgFile, []byte("[gateway]\nsys_interval = \"200ms\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterConfig(t, ctx, 1, cfgFile)
	id := c.gateways[0].Addrs["gateway_id"]
	if id == "" {
		t.Fatalf("the gateway's ready line names no gateway_id: %v", c.gateways[0].Addrs)
	}
	h, p, _ := net.SplitHostPort(c.addr(0))
	// Two rounds of 23 topics: the retained values, then live ones.
	cmd := exec.CommandContext(ctx, "mosquitto_sub", "-h", h, "-p", p, "-V", "mqttv5", "-t", "$SYS/#", "-v", "-C", "46", "-W", "20")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out)
	}
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		topic, value, _ := strings.Cut(line, " ")
		got[topic] = append(got[topic], value)
	}
	for topic, want := range map[string]string{
		"$SYS/brokers/" + id + "/stats/connections/count": "1",
		"$SYS/broker/clients/connected":                   "1",
		"$SYS/broker/subscriptions/count":                 "1",
	} {
		if v := got[topic]; len(v) < 2 || v[len(v)-1] != want {
			t.Errorf("%s: %v, want the live value %s last", topic, v, want)
		}
	}
	if v := got["$SYS/broker/version"]; len(v) == 0 || !strings.HasPrefix(v[0], "strata gateway ") {
		t.Errorf("$SYS/broker/version: %v", v)
	}
	if v := got["$SYS/broker/uptime"]; len(v) == 0 || !strings.HasSuffix(v[0], " seconds") {
		t.Errorf("$SYS/broker/uptime: %v", v)
	}
	if t.Failed() {
		t.Logf("mosquitto_sub printed:\n%s", out)
	}
}
