package server

import (
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// onlyConn returns the server's one connection.
func onlyConn(t *testing.T, s *Server) *conn {
	t.Helper()
	var conns []*conn
	wait.For(t, 5*time.Second, "one connection", func() bool {
		conns = s.connections()
		return len(conns) == 1
	})
	return conns[0]
}

// An idle connection gives back what it holds while it has nothing to do
// (no writer goroutine, no outbound queue; on plain TCP no read buffer
// either) and works as before when the client speaks again, several times
// over; closing it leaves no goroutine behind (goleak in TestMain).
func TestIdleConnectionReleasesItsBuffers(t *testing.T) {
	for _, typ := range transports {
		t.Run(typ, func(t *testing.T) {
			s := testServer(t)
			c := newClient(t, dial(t, s, typ), packet.V5)
			c.send(&packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "idle-" + typ})
			if ack, ok := c.mustRecv().(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK %+v", ack)
			}
			sc := onlyConn(t, s)
			for round := range 3 {
				wait.For(t, 5*time.Second, "the writer to end and the queue to go", func() bool {
					sc.mu.Lock()
					defer sc.mu.Unlock()
					return sc.mu.writerDone == nil && sc.mu.outq == nil
				})
				if typ == "tcp" {
					wait.For(t, 5*time.Second, "the read buffer to go back", func() bool { return !sc.holdsReadBuf.Load() })
				}
				// Two packets in one write: the second waits in the read
				// buffer while the first is handled.
				b, _ := (&packet.Pingreq{}).Append(nil, packet.V5)
				if _, err := c.nc.Write(append(b, b...)); err != nil {
					t.Fatal(err)
				}
				for range 2 {
					if p, ok := c.mustRecv().(*packet.Pingresp); !ok {
						t.Fatalf("round %d: %T, want PINGRESP", round, p)
					}
				}
			}
		})
	}
}

// The outbound queue holds at most OutboundQueue packets: past it the
// connection is closed as a slow consumer, whatever the writer is doing.
func TestOutboundQueueBound(t *testing.T) {
	s := testServer(t, func(o *Options) { o.OutboundQueue = 2 })
	c := newClient(t, dial(t, s, "tcp"), packet.V5)
	c.send(&packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "bound"})
	c.mustRecv()
	sc := onlyConn(t, s)
	wait.For(t, 5*time.Second, "the CONNACK's writer to end", func() bool {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return sc.mu.writerDone == nil
	})
	sc.mu.Lock()
	sc.mu.writerDone = make(chan struct{}) // a writer that never takes the queue
	ok1 := sc.enqueueLocked(outItem{b: []byte{0xd0, 0}, typ: packet.PINGRESP})
	ok2 := sc.enqueueLocked(outItem{b: []byte{0xd0, 0}, typ: packet.PINGRESP})
	ok3 := sc.enqueueLocked(outItem{b: []byte{0xd0, 0}, typ: packet.PINGRESP})
	sc.mu.outq = nil
	close(sc.mu.writerDone)
	sc.mu.writerDone = nil
	sc.mu.Unlock()
	if !ok1 || !ok2 || ok3 {
		t.Errorf("enqueue into a queue of 2: %v %v %v, want true true false", ok1, ok2, ok3)
	}
	c.send(&packet.Pingreq{})
	if _, ok := c.mustRecv().(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP after the queue emptied")
	}
}
