package tcpproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratamq/strata/internal/testutil/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// target is a listener whose accepted connections the test takes one by
// one: each proxied connection's target side.
type target struct {
	ln    net.Listener
	conns chan net.Conn
}

func newTarget(t *testing.T) *target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{ln: ln, conns: make(chan net.Conn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(tg.conns)
		for c := range tg.conns {
			_ = c.Close()
		}
	})
	return tg
}

func newProxy(t *testing.T, target string, opts Options) *Proxy {
	t.Helper()
	p, err := New(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// dial connects a client through p and returns both ends: the client's
// and the target's.
func dial(t *testing.T, p *Proxy, tg *target) (client, server net.Conn) {
	t.Helper()
	accepted := func() (n int) {
		for _, v := range p.Stats().Accepted {
			n += v
		}
		return n
	}
	before := accepted()
	client, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	select {
	case server = <-tg.conns:
		t.Cleanup(func() { _ = server.Close() })
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not dial the target")
	}
	// The proxy counts the connection once its dial returned.
	wait.For(t, 5*time.Second, "the proxy counting the connection", func() bool { return accepted() > before })
	return client, server
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// expect reads exactly want from c within 5 s.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q (%v), want %q", got, err, want)
	}
}

// expectNothing checks that c receives nothing (and is not closed) for a
// while: the held direction. A bounded wait is the only way to see that
// something does not arrive.
func expectNothing(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	b := make([]byte, 64)
	n, err := c.Read(b)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q (%v) through a blocked direction, want nothing until the deadline", b[:n], err)
	}
}

func TestPassAndBlock(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg.ln.Addr().String(), Options{})
	client, server := dial(t, p, tg)
	send(t, client, "ping")
	expect(t, server, "ping")
	send(t, server, "pong")
	expect(t, client, "pong")

	// A partition: nothing either way, the connection stays open.
	p.Set(Block)
	send(t, client, "a1")
	send(t, server, "b1")
	expectNothing(t, server)
	expectNothing(t, client)
	send(t, client, "a2")
	// Healed: the held bytes follow, in order.
	p.Heal()
	expect(t, server, "a1a2")
	expect(t, client, "b1")
	// The counts follow the writes they count.
	wait.For(t, 5*time.Second, "8 bytes up, 6 down, 1 open, 1 accepted", func() bool {
		st := p.Stats()
		return st.Up == 8 && st.Down == 6 && st.Open == 1 && st.Accepted[""] == 1
	})
}

func TestOneDirection(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg.ln.Addr().String(), Options{})
	client, server := dial(t, p, tg)

	p.Set(BlockUp)
	send(t, client, "up")
	send(t, server, "down")
	expect(t, client, "down")
	expectNothing(t, server)
	p.Set(BlockDown) // the held bytes go up; now the target's are held
	expect(t, server, "up")
	send(t, server, "held")
	send(t, client, "more")
	expect(t, server, "more")
	expectNothing(t, client)
	p.Set(Pass)
	expect(t, client, "held")
}

// TestHeldEOF: a client that closes its side during a partition is not
// seen closing until the partition heals.
func TestHeldEOF(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg.ln.Addr().String(), Options{})
	client, server := dial(t, p, tg)
	p.Set(Block)
	send(t, client, "last")
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, server)
	p.Heal()
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(server); err != nil || string(b) != "last" {
		t.Fatalf("after healing the target read %q and %v, want \"last\" then the end of stream", b, err)
	}
	// The other direction still works until the target closes too.
	send(t, server, "bye")
	expect(t, client, "bye")
}

// TestLabels: a label's mode applies to its connections only; the proxy's
// mode to all.
func TestLabels(t *testing.T) {
	tg := newTarget(t)
	var n atomic.Int32
	p := newProxy(t, tg.ln.Addr().String(), Options{Label: func(net.Conn) string { return fmt.Sprintf("c%d", n.Add(1)) }})
	c1, s1 := dial(t, p, tg)
	c2, s2 := dial(t, p, tg)
	if st := p.Stats(); st.Accepted["c1"] != 1 || st.Accepted["c2"] != 1 {
		t.Fatalf("accepted %v, want c1 and c2", st.Accepted)
	}
	p.SetLabel("c1", BlockDown)
	send(t, s1, "x")
	send(t, s2, "y")
	expect(t, c2, "y")
	expectNothing(t, c1)
	send(t, c1, "up") // c1's other direction flows
	expect(t, s1, "up")
	p.Set(BlockUp) // every connection; c1 keeps its own block too
	send(t, c2, "z")
	expectNothing(t, s2)
	p.SetLabel("c1", Pass)
	expect(t, c1, "x")
	p.Heal()
	expect(t, s2, "z")
}

// TestAcceptedWhileBlocked: a connection made during a partition carries
// nothing until it heals.
func TestAcceptedWhileBlocked(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg.ln.Addr().String(), Options{})
	p.Set(Block)
	client, server := dial(t, p, tg)
	send(t, client, "hello")
	expectNothing(t, server)
	p.Heal()
	expect(t, server, "hello")
}

func TestDropConnsAndClose(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg.ln.Addr().String(), Options{})
	client, server := dial(t, p, tg)
	p.Set(Block)
	send(t, client, "lost")
	if n := p.DropConns(); n != 1 {
		t.Fatalf("DropConns closed %d connections, want 1", n)
	}
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(server); len(b) != 0 || err != nil {
		t.Fatalf("the target read %q, %v after the drop: want the end of stream and none of the held bytes", b, err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's connection survived DropConns")
	}
	// New connections are still accepted (and blocked).
	p.Heal()
	c2, s2 := dial(t, p, tg)
	send(t, c2, "again")
	expect(t, s2, "again")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("a closed proxy still accepts")
	}
}

// TestTargetDown: with nothing at the target the client's connection
// ends.
func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := newProxy(t, addr, Options{})
	client, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read %v, want the end of stream", err)
	}
}
