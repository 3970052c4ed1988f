package mqttrec

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// The reader never blocks on a write: over a net.Pipe, which has no buffer
// at all, a server that sends many messages before it reads any
// acknowledgement still gets them all delivered. (A reader that wrote its
// own acks would block on the first one, and the server on its second
// PUBLISH: a deadlock mosquitto can provoke under load.)
func TestReaderDoesNotBlockOnWrites(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	const n = 500
	delivered := make(chan struct{}, n)
	s := NewSession(SessionOptions{NoLog: true, OnMessage: func(Message) { delivered <- struct{}{} }})

	serverDone := make(chan error, 1)
	go func() {
		br := bufio.NewReader(srv)
		if _, err := packet.ReadPacket(br, packet.V5, 0); err != nil { // CONNECT
			serverDone <- err
			return
		}
		var b []byte
		b, _ = (&packet.Connack{}).Append(b, packet.V5)
		for id := uint16(1); id <= n; id++ {
			b, _ = pub(1, id, "t", "x").Append(b, packet.V5)
		}
		_, err := srv.Write(b)
		serverDone <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := handshake(ctx, cli, s, Options{ClientID: "c", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		select {
		case <-delivered:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d delivered: the reader is stuck", i, n)
		}
	}
	if err := <-serverDone; err != nil {
		t.Fatal(err)
	}
	// Now the server reads the acknowledgements, all of them in order.
	br := bufio.NewReader(srv)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for id := uint16(1); id <= n; id++ {
		p, err := packet.ReadPacket(br, packet.V5, 0)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := p.(*packet.Puback); !ok || a.PacketID != id {
			t.Fatalf("got %+v, want PUBACK %d", p, id)
		}
	}
}
