package server

import (
	"bufio"
	"crypto/tls"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/testpki"
)

// TestTLSClientCertificateVerification: a tls listener with verify_peer
// refuses a client without a certificate signed by cacertfile and serves one
// with such a certificate.
func TestTLSClientCertificateVerification(t *testing.T) {
	pki := testpki.New(t)
	certFile, keyFile := pki.Issue(t, "gateway", true)
	s := testServer(t, func(o *Options) {
		o.Config.Listeners = map[string]map[string]config.Listener{
			"tls": {"default": {Bind: "127.0.0.1:0", Zone: "default", CertFile: certFile, KeyFile: keyFile, CACertFile: pki.CAFile, VerifyPeer: true}},
		}
	})
	addr := s.addr("tls")

	// Without a client certificate the handshake fails: the first read or
	// write on the connection errors (TLS 1.3 reports it after Dial).
	nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.Pool()})
	if err == nil {
		b, err := (&packet.Connect{Version: packet.V5, ClientID: "anon", CleanStart: true}).Append(nil, packet.V5)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = nc.Write(b) // may fail already: the server refused the handshake
		if p, err := packet.ReadPacket(bufio.NewReader(nc), packet.V5, 0); err == nil {
			t.Fatalf("a client without a certificate got %s", p.Type())
		}
		nc.Close()
	}

	clientCert, clientKey := pki.Issue(t, "device-1", false)
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	nc, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.Pool(), Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := newClient(t, nc, packet.V5)
	if ack := c.connect("device-1", 30); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02X for a client with a valid certificate", byte(ack.ReasonCode))
	}
}

// TestCertIdentityAsUsername: on a tls listener with verify_peer and
// use_identity_as_username = "cn", the verified certificate's Common Name
// is the username, authenticated without a password (anonymous access is
// off here), and ACL rules see it as %u.
func TestCertIdentityAsUsername(t *testing.T) {
	pki := testpki.New(t)
	certFile, keyFile := pki.Issue(t, "gateway", true)
	authn, err := auth.New(config.Auth{AllowAnonymous: config.AnonymousDeny, Hash: "bcrypt", BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	acl, err := auth.NewACL(config.ACL{Rules: []config.ACLRule{
		{Permission: "allow", Action: "all", Topics: []string{"devices/%u/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := testServer(t, func(o *Options) {
		o.Authenticator, o.ACL = authn, acl
		o.Config.Listeners = map[string]map[string]config.Listener{
			"tls": {"default": {Bind: "127.0.0.1:0", Zone: "default", CertFile: certFile, KeyFile: keyFile,
				CACertFile: pki.CAFile, VerifyPeer: true, UseIdentityAsUsername: "cn"}},
		}
	})
	clientCert, clientKey := pki.Issue(t, "device-1", false)
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := tls.Dial("tcp", s.addr("tls"), &tls.Config{RootCAs: pki.Pool(), Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, nc, packet.V5)
	// A claimed username is replaced by the certificate's.
	c.send(&packet.Connect{Version: packet.V5, ClientID: "d1", CleanStart: true, UsernameFlag: true, Username: "admin"})
	if ack, ok := c.mustRecv().(*packet.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("got %+v, want CONNACK 0x00", ack)
	}
	for topic, want := range map[string]packet.ReasonCode{"devices/device-1/t": packet.Success, "devices/admin/t": packet.NotAuthorized} {
		c.send(&packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("x")})
		if ack, ok := c.mustRecv().(*packet.Puback); !ok || ack.ReasonCode != want {
			t.Fatalf("%s: got %+v, want PUBACK 0x%02X", topic, ack, byte(want))
		}
	}
}
