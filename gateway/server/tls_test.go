package server

import (
	"bufio"
	"crypto/tls"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testpki"
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
