package server

import (
	"github.com/stratamq/strata/internal/testutil"
	"strings"
	"testing"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/packet"
)

// TestWillACL: a will is a PUBLISH the client arms at CONNECT, so its topic
// passes the ACL there: a denied one is refused with CONNACK 0x87 (MQTT 5)
// or 0x05 (3.1.1) and counted. Before, the session opened with the will
// and the will was published at the end whatever the ACL said.
func TestWillACL(t *testing.T) {
	acl, err := auth.NewACL(config.ACL{Rules: []config.ACLRule{
		{Permission: "deny", Action: "publish", Topics: []string{"secret/#"}},
		{Permission: "allow", Action: "all", Topics: []string{"#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := testServer(t, func(o *Options) { o.ACL = acl })
	connectWill := func(v packet.Version, id, topic string) (*client, *packet.Connack) {
		c := newClient(t, dial(t, s, "tcp"), v)
		c.send(&packet.Connect{Version: v, ClientID: id, CleanStart: true, WillFlag: true, WillTopic: topic, WillPayload: []byte("bye")})
		ack, ok := c.mustRecv().(*packet.Connack)
		if !ok {
			t.Fatal("no CONNACK")
		}
		return c, ack
	}
	c5, ack := connectWill(packet.V5, "w5", "secret/x")
	if ack.ReasonCode != packet.NotAuthorized {
		t.Fatalf("MQTT 5: CONNACK 0x%02X, want 0x87", byte(ack.ReasonCode))
	}
	c5.expectClosed()
	c3, ack := connectWill(packet.V311, "w3", "secret/x")
	if byte(ack.ReasonCode) != packet.ConnectRefusedNotAuthorized {
		t.Fatalf("3.1.1: CONNACK 0x%02X, want 0x05", byte(ack.ReasonCode))
	}
	c3.expectClosed()
	if _, ack := connectWill(packet.V311, "ok", "status/ok"); ack.ReasonCode != 0 {
		t.Fatalf("an allowed will topic: CONNACK 0x%02X", byte(ack.ReasonCode))
	}

	// A 3.1.1 client's denied QoS 1 PUBLISH is acknowledged normally and
	// dropped (acl.deny_action = "ignore"); the connection goes on.
	c := newClient(t, dial(t, s, "tcp"), packet.V311)
	c.connect("p3", 0)
	c.send(&packet.Publish{Topic: "secret/x", QoS: 1, PacketID: 7, Payload: []byte("x")})
	if ack, ok := c.mustRecv().(*packet.Puback); !ok || ack.PacketID != 7 {
		t.Fatalf("got %+v, want PUBACK 7", ack)
	}
	c.send(&packet.Pingreq{})
	if _, ok := c.mustRecv().(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP")
	}
	m := testutil.Metrics(t, s.HTTPAddr())
	for _, want := range []string{`strata_gateway_acl_denied_total{action="will"} 2`, `strata_gateway_acl_denied_total{action="publish"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, testutil.Lines(m, "acl"))
		}
	}
}

// TestDenyActionDisconnect: with acl.deny_action = "disconnect" a denied
// PUBLISH closes the connection, MQTT 5 with DISCONNECT 0x87.
func TestDenyActionDisconnect(t *testing.T) {
	acl, err := auth.NewACL(config.ACL{Rules: []config.ACLRule{
		{Permission: "allow", Action: "all", Topics: []string{"ok/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := testServer(t, func(o *Options) {
		o.ACL = acl
		o.Config.ACL.DenyAction = config.DenyDisconnect
	})
	c := newClient(t, dial(t, s, "tcp"), packet.V5)
	c.connect("d5", 0)
	c.send(&packet.Publish{Topic: "no/x", Payload: []byte("x")})
	if d, ok := c.mustRecv().(*packet.Disconnect); !ok || d.ReasonCode != packet.NotAuthorized {
		t.Fatalf("got %+v, want DISCONNECT 0x87", d)
	}
	c.expectClosed()
	if m := testutil.Metrics(t, s.HTTPAddr()); !strings.Contains(m, `strata_gateway_connections_closed_total{reason="not_authorized"} 1`) {
		t.Errorf("close not counted:\n%s", testutil.Lines(m, "closed"))
	}
}
