package mqttrec

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// fakeServer is a scripted MQTT server: the test accepts a connection and
// plays packets with the codec, reading what the client answers.
type fakeServer struct {
	ln net.Listener
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakeServer{ln: ln}
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

// fakeConn is the server end of one connection.
type fakeConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
	v  packet.Version
}

func (f *fakeServer) accept(t *testing.T, v packet.Version) *fakeConn {
	t.Helper()
	type res struct {
		nc  net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := f.ln.Accept()
		ch <- res{nc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.nc.Close() })
		return &fakeConn{t: t, nc: r.nc, br: bufio.NewReader(r.nc), v: v}
	case <-time.After(5 * time.Second):
		f.ln.Close()
		<-ch
		t.Fatal("no connection within 5s")
		return nil
	}
}

func (c *fakeConn) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Append(nil, c.v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.raw(b)
}

func (c *fakeConn) raw(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *fakeConn) recv() packet.Packet {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	v := c.v
	p, err := packet.ReadPacket(c.br, v, 0)
	if err != nil {
		c.t.Fatalf("server read: %v", err)
	}
	return p
}

// expect reads the next packet and checks it has the type of want, and
// that its packet identifier (if any) matches.
func expect[P packet.Packet](c *fakeConn) P {
	c.t.Helper()
	p := c.recv()
	got, ok := p.(P)
	if !ok {
		var zero P
		c.t.Fatalf("server got %v (%+v), want %T", p.Type(), p, zero)
	}
	return got
}

// waitClosed reads until the client closes the connection.
func (c *fakeConn) waitClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := packet.ReadPacket(c.br, c.v, 0); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatal("client did not close the connection")
			}
			return
		}
	}
}

// dial connects a Session through the fake server: the client's Connect
// runs in a goroutine while the test plays the server's side.
func dial(t *testing.T, f *fakeServer, s *Session, opts Options, ack *packet.Connack) (*Conn, *fakeConn) {
	t.Helper()
	if opts.Version == 0 {
		opts.Version = packet.V5
	}
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, err := Connect(ctx, f.addr(), s, opts)
		ch <- res{c, err}
	}()
	sc := f.accept(t, opts.Version)
	cp := expect[*packet.Connect](sc)
	if cp.ClientID != opts.ClientID || cp.CleanStart != opts.CleanStart {
		t.Errorf("CONNECT %+v, want client id %q clean start %v", cp, opts.ClientID, opts.CleanStart)
	}
	sc.send(ack)
	r := <-ch
	if r.err != nil {
		t.Fatalf("Connect: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c, sc
}

// async runs f in a goroutine and returns a channel with its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func recvErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("call did not return within 5s")
		return nil
	}
}

func pub(qos byte, id uint16, topic, payload string) *packet.Publish {
	return &packet.Publish{QoS: qos, PacketID: id, Topic: topic, Payload: []byte(payload)}
}

// versions runs body for MQTT 3.1.1 and 5.0.
func versions(t *testing.T, body func(t *testing.T, v packet.Version)) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run("v"+v.String(), func(t *testing.T) { body(t, v) })
	}
}
