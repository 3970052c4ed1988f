package server

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/packet"
)

// TestJWTExpiryDisconnect: a client that authenticated with a JWT is
// disconnected when the token expires, MQTT 5 with DISCONNECT 0xA0
// (maximum connect time); the token's claims are usable in ACL rules.
func TestJWTExpiryDisconnect(t *testing.T) {
	secret := "test-secret-0123456789"
	ac := config.Default().Auth
	ac.AllowAnonymous = config.AnonymousDeny
	ac.JWT = config.JWT{Enable: true, Algorithm: "HS256", Secret: config.Secret(secret), VerifyClaims: map[string]string{"sub": "%u"}}
	authn, err := auth.New(ac)
	if err != nil {
		t.Fatal(err)
	}
	acl, err := auth.NewACL(config.ACL{Rules: []config.ACLRule{
		{Permission: "allow", Action: "all", Topics: []string{"tenants/%{tenant}/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := testServer(t, func(o *Options) { o.Authenticator, o.ACL = authn, acl })
	exp := time.Unix(time.Now().Add(2*time.Second).Unix(), 0) // exp has whole seconds
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "tenant": "acme", "exp": exp.Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, dial(t, s, "tcp"), packet.V5)
	c.send(&packet.Connect{Version: packet.V5, ClientID: "j1", CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte(tok)})
	if ack, ok := c.mustRecv().(*packet.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("got %+v, want CONNACK 0x00", ack)
	}
	for topic, want := range map[string]packet.ReasonCode{"tenants/acme/a": packet.Success, "tenants/other/a": packet.NotAuthorized} {
		c.send(&packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("x")})
		if ack, ok := c.mustRecv().(*packet.Puback); !ok || ack.ReasonCode != want {
			t.Fatalf("%s: got %+v, want PUBACK 0x%02X", topic, ack, byte(want))
		}
	}
	d, ok := c.mustRecv().(*packet.Disconnect)
	if !ok || d.ReasonCode != packet.MaximumConnectTime {
		t.Fatalf("got %+v, want DISCONNECT 0xA0", d)
	}
	if early := time.Until(exp); early > 0 {
		t.Fatalf("disconnected %v before the token expired", early)
	}
	c.expectClosed()

	// A token for another user (verify_claims sub = %u) is refused 0x86.
	c = newClient(t, dial(t, s, "tcp"), packet.V5)
	c.send(&packet.Connect{Version: packet.V5, ClientID: "j2", CleanStart: true,
		UsernameFlag: true, Username: "bob", PasswordFlag: true, Password: []byte(tok)})
	if ack, ok := c.mustRecv().(*packet.Connack); !ok || ack.ReasonCode != packet.BadUserNameOrPassword {
		t.Fatalf("got %+v, want CONNACK 0x86", ack)
	}
}
