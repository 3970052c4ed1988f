package server

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// parkingServer is a test server whose idle connections park at the park
// loop's next sweep (within parkSweep) instead of after parkAfter.
func parkingServer(t *testing.T) *Server {
	return testServer(t, func(o *Options) { o.hooks = &testHooks{parkAfter: time.Nanosecond} })
}

// waitParked waits until the server's one connection has parked (no
// goroutine: conn_park.go).
func waitParked(t *testing.T, s *Server) *conn {
	t.Helper()
	sc := onlyConn(t, s)
	wait.For(t, 5*time.Second, "the connection to park", func() bool { return sc.parked.Load() })
	return sc
}

// An idle plain TCP connection parks, and resumes for each packet as if it
// had waited in its own goroutine: several rounds of packets, one of them
// split across two writes (the rest arrives after the resumed goroutine
// read the first byte).
func TestParkedConnectionResumes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park only on Linux")
	}
	s := parkingServer(t)
	c := newClient(t, dial(t, s, "tcp"), packet.V5)
	c.connect("parked", 0)
	for round := range 3 {
		waitParked(t, s)
		b, _ := (&packet.Pingreq{}).Append(nil, packet.V5)
		if round == 1 {
			if _, err := c.nc.Write(b[:1]); err != nil {
				t.Fatal(err)
			}
			sc := onlyConn(t, s)
			wait.For(t, 5*time.Second, "the connection to resume", func() bool { return !sc.parked.Load() })
			b = b[1:]
		}
		if _, err := c.nc.Write(b); err != nil {
			t.Fatal(err)
		}
		if p, ok := c.mustRecv().(*packet.Pingresp); !ok {
			t.Fatalf("round %d: %T, want PINGRESP", round, p)
		}
	}
	waitParked(t, s)
	c.send(&packet.Disconnect{})
	c.expectClosed()
	wait.For(t, 5*time.Second, "the connection to end", func() bool { return len(s.connections()) == 0 })
}

// A parked connection ends as a running one does: when its client goes,
// when its keep-alive runs out, when its session is taken over, and when
// the server shuts down (MQTT 5: DISCONNECT 0x8B) or closes.
func TestParkedConnectionEnds(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park only on Linux")
	}
	t.Run("client gone", func(t *testing.T) {
		s := parkingServer(t)
		c := newClient(t, dial(t, s, "tcp"), packet.V5)
		c.connect("gone", 0)
		waitParked(t, s)
		_ = c.nc.Close()
		wait.For(t, 5*time.Second, "the connection to end", func() bool { return len(s.connections()) == 0 })
	})
	t.Run("keep alive", func(t *testing.T) {
		s := parkingServer(t)
		c := newClient(t, dial(t, s, "tcp"), packet.V5)
		c.connect("keepalive", 3)
		waitParked(t, s)
		d, ok := c.mustRecv().(*packet.Disconnect)
		if !ok || d.ReasonCode != packet.KeepAliveTimeout {
			t.Fatalf("got %+v, want DISCONNECT 0x8D", d)
		}
		c.expectClosed()
		wait.For(t, 5*time.Second, "the connection to end", func() bool { return len(s.connections()) == 0 })
	})
	t.Run("takeover", func(t *testing.T) {
		s := parkingServer(t)
		old := newClient(t, dial(t, s, "tcp"), packet.V5)
		old.connect("same", 0)
		waitParked(t, s)
		c := newClient(t, dial(t, s, "ws"), packet.V5)
		c.connect("same", 0)
		d, ok := old.mustRecv().(*packet.Disconnect)
		if !ok || d.ReasonCode != packet.SessionTakenOver {
			t.Fatalf("got %+v, want DISCONNECT 0x8E", d)
		}
		old.expectClosed()
	})
	t.Run("shutdown", func(t *testing.T) {
		s := parkingServer(t)
		c := newClient(t, dial(t, s, "tcp"), packet.V5)
		c.connect("shutdown", 0)
		waitParked(t, s)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		d, ok := c.mustRecv().(*packet.Disconnect)
		if !ok || d.ReasonCode != packet.ServerShuttingDown {
			t.Fatalf("got %+v, want DISCONNECT 0x8B", d)
		}
		c.expectClosed()
	})
	t.Run("close", func(t *testing.T) {
		s := parkingServer(t)
		c := newClient(t, dial(t, s, "tcp"), packet.V5)
		c.connect("close", 0)
		waitParked(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		c.expectClosed()
	})
}

// Connections of the other transports never park: they keep their
// goroutine (TLS and WebSocket buffer in their own layers). A plain TCP
// one may, on Linux.
func TestOnlyPlainTCPParks(t *testing.T) {
	s := testServer(t)
	typs := []string{"tcp", "ws", "tls", "wss"}
	for _, typ := range typs {
		c := newClient(t, dial(t, s, typ), packet.V5)
		c.connect("np-"+typ, 0)
	}
	conns := s.connections()
	if len(conns) != len(typs) {
		t.Fatalf("%d connections, want %d", len(conns), len(typs))
	}
	for _, sc := range conns {
		if want := sc.l.typ == "tcp" && runtime.GOOS == "linux"; sc.canPark() != want {
			t.Errorf("a %s connection: canPark %v, want %v", sc.l.typ, sc.canPark(), want)
		}
	}
}

// When the poller stops, its parked connections resume and wait in their
// own goroutines from then on; they keep working and end as usual.
func TestParkedConnectionsOutliveThePoller(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park only on Linux")
	}
	s := parkingServer(t)
	c := newClient(t, dial(t, s, "tcp"), packet.V5)
	c.connect("outlive", 0)
	sc := waitParked(t, s)
	s.stopPoller()
	wait.For(t, 5*time.Second, "the connection to resume", func() bool { return !sc.parked.Load() })
	for range 2 {
		c.send(&packet.Pingreq{})
		if p, ok := c.mustRecv().(*packet.Pingresp); !ok {
			t.Fatalf("%T, want PINGRESP", p)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
}
