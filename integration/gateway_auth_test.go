package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stratamq/strata/gateway/packet"
)

// passwdFile has 200 users with bcrypt cost 10 hashes; user%03d's password
// is secret-%03d (shared with gateway/auth's unit test).
const passwdFile = "../gateway/auth/testdata/reconnect.passwd"

// reconnectBound is the stated budget for 2,000 password CONNECTs of 200
// users through a real gateway and dsd on 2 cores: 200 bcrypt hashes (about
// 60 ms each, so about 6 s on 2 cores) plus 4,000 fsynced session commands
// (open and disconnect) in dsd. Without the credential cache the hashes
// alone would take about 60 s.
const reconnectBound = 30 * time.Second

// TestGatewayPasswordReconnectStorm: after a gateway failover every client
// reconnects, often several times. 2,000 CONNECTs with passwords (200 users
// × 10) through the real gateway finish within reconnectBound, a wrong
// password gets CONNACK 0x86, and no password gets 0x87 when anonymous
// access is off.
func TestGatewayPasswordReconnectStorm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	abs, err := filepath.Abs(passwdFile)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "strata.toml")
	// The storm is about password checks; the admission rate (taken at
	// accept, 1000/s by default) would close some of its connections once
	// their credentials are cached and they come faster than that.
	cfg := fmt.Sprintf("auth.allow_anonymous = false\nauth.password_file = %q\n[mqtt]\nmax_conn_rate = \"100000/s\"\n", abs)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)
	g, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: d.GRPCAddr, ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop(10 * time.Second)
	addr := g.Addrs["tcp.default"]

	if code, err := connectOnce(addr, "intruder", "user001", []byte("wrong")); err != nil || code != byte(packet.BadUserNameOrPassword) {
		t.Errorf("wrong password: CONNACK 0x%02X, %v; want 0x86", code, err)
	}
	if code, err := connectOnce(addr, "anon", "", nil); err != nil || code != byte(packet.NotAuthorized) {
		t.Errorf("no credentials: CONNACK 0x%02X, %v; want 0x87", code, err)
	}

	const users, rounds, concurrency = 200, 10, 50
	start := time.Now()
	var eg errgroup.Group
	eg.SetLimit(concurrency)
	for r := range rounds {
		for u := range users {
			eg.Go(func() error {
				user := fmt.Sprintf("user%03d", u)
				code, err := connectOnce(addr, user, user, fmt.Appendf(nil, "secret-%03d", u))
				if err != nil {
					return fmt.Errorf("%s round %d: %w", user, r, err)
				}
				if code != 0 {
					return fmt.Errorf("%s round %d: CONNACK 0x%02X", user, r, code)
				}
				return nil
			})
		}
	}
	if err := eg.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, g.Log())
	}
	took := time.Since(start)
	t.Logf("%d password CONNECTs (%d users) through the gateway in %v", users*rounds, users, took)
	if took > reconnectBound {
		t.Errorf("%d password CONNECTs took %v, over the stated bound of %v", users*rounds, took, reconnectBound)
	}
}

// connectOnce connects with MQTT 5, reads the CONNACK, disconnects normally
// when accepted, and returns the CONNACK reason code.
func connectOnce(addr, clientID, username string, password []byte) (byte, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &packet.Connect{Version: packet.V5, ClientID: clientID, CleanStart: true, KeepAlive: 30}
	if username != "" {
		c.UsernameFlag, c.Username = true, username
	}
	if password != nil {
		c.PasswordFlag, c.Password = true, password
	}
	b, err := c.Append(nil, packet.V5)
	if err != nil {
		return 0, err
	}
	if _, err := nc.Write(b); err != nil {
		return 0, err
	}
	p, err := packet.ReadPacket(bufio.NewReader(nc), packet.V5, 0)
	if err != nil {
		return 0, err
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		return 0, fmt.Errorf("got %s, want CONNACK", p.Type())
	}
	if ack.ReasonCode == 0 {
		d, err := (&packet.Disconnect{}).Append(nil, packet.V5)
		if err != nil {
			return 0, err
		}
		if _, err := nc.Write(d); err != nil {
			return 0, err
		}
	}
	return byte(ack.ReasonCode), nil
}
