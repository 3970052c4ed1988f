package server

import (
	"errors"
	"os"
	"time"
)

// An idle plain TCP connection has no goroutine. When its read loop finds
// nothing to read and nothing to wait for (no read buffered, no delivery
// awaiting acknowledgement, no inbound budget wait), it waits for the next
// byte in the runtime's poller as any read does, and notes since when
// (waitSince). Every parkSweep the server's park loop looks at every
// connection's waitSince (an atomic load each): one that has waited
// parkAfter or more gets a read deadline in the past (kickIdle), which ends
// the wait; its read loop then parks it: it registers the socket in the
// server's epoll set (poller_linux.go) and its goroutine returns. A busy
// connection pays two atomic operations per wait for this, and no system
// call. The first of these resumes a parked connection in a new goroutine
// (unpark), which runs the read loop from its top:
//
//   - the socket turns readable, hangs up or fails (the poller's goroutine);
//   - the connection is aborted (abort: a close the machine decided, such
//     as a keep-alive timeout, a kick or a shutdown, or a write error): the
//     new goroutine's read then fails and it ends the connection.
//
// parked says which state the connection is in; whoever turns it from true
// to false owns the connection's next goroutine, so there is never more than
// one. The goroutine that parks touches nothing of the connection once it
// has set parked. The connection's place in Server.wg (taken before it was
// served) is left by the goroutine that ends it (run), so Shutdown and Close
// wait for parked connections as for running ones; both abort or close every
// connection, which resumes the parked ones.
//
// Only plain TCP connections park, where the socket can be waited on
// without a buffer (socketOf): TLS, WebSocket and PROXY connections keep a
// goroutine (and the runtime's stack under it) for their life, as do all
// connections where there is no poller (other systems than Linux, or an
// epoll set that could not be made).

// parkAfter is how long a connection waits for its next byte in its own
// goroutine before it is made to park, and parkSweep how often the park
// loop looks (so a connection parks 100 to 200 ms after its last packet).
// A busy connection never parks, and the few system calls of a park and
// resume are spent only on connections that were idle this long. The
// sweep is an atomic load per connection, under Server.mu: 10,000
// connections take about 0.1 ms.
const (
	parkAfter = 100 * time.Millisecond
	parkSweep = 100 * time.Millisecond
)

// waitKicked is waitSince once kickIdle has ended the wait.
const waitKicked = -1

// waitOrPark waits for the socket to have bytes and fills the read buffer
// with them, or parks the connection when kickIdle ends the wait;
// since is when the connection went quiet. It reports true when the
// connection parked: the caller's goroutine must then return at once. Any
// other outcome (bytes, an error, a park refused) leaves the read to the
// read loop, which meets the error again or, where the park was refused,
// waits in this goroutine. Only the read goroutine calls it.
func (c *conn) waitOrPark(since time.Time) bool {
	c.waitSince.Store(since.UnixNano())
	br, err := fillFromSocket(c.sock, &c.src)
	if c.waitSince.Swap(0) == waitKicked {
		// The kick set the deadline under mu: once mu is ours, it is set,
		// and clearing it cannot come before it.
		c.mu.Lock()
		_ = c.nc.SetReadDeadline(time.Time{})
		c.mu.Unlock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return c.park()
		}
	}
	if err == nil {
		c.br = br
		c.holdsReadBuf.Store(true)
	}
	return false
}

// parkLoop makes idle connections park, every parkSweep until stop is
// closed.
func (s *Server) parkLoop(stop <-chan struct{}) {
	t := time.NewTicker(parkSweep)
	defer t.Stop()
	var idle []*conn
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if s.poller.stopped() {
				return // nothing parks any more
			}
			idle = s.idleConns(now, idle[:0])
			for _, c := range idle {
				c.kickIdle()
			}
			clear(idle) // hold no connection until the next sweep
		}
	}
}

// idleConns appends the connections that have waited for a byte since
// before now - parkAfter. Only atomics are read under s.mu.
func (s *Server) idleConns(now time.Time, out []*conn) []*conn {
	before := now.UnixNano() - int64(s.parkAfter)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.mu.conns {
		if since := c.waitSince.Load(); since > 0 && since <= before {
			out = append(out, c)
		}
	}
	return out
}

// kickIdle ends the wait of a connection that waits for a byte, so that it
// parks. It sets the deadline under mu, and the read loop clears it under
// mu (waitOrPark), so the clearing cannot come first.
func (c *conn) kickIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	since := c.waitSince.Load()
	if since > 0 && c.waitSince.CompareAndSwap(since, waitKicked) {
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// aLongTimeAgo is a read deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// park registers the connection in the poller and gives up its goroutine;
// false when it could not (the socket was closed meanwhile, or the poller
// stopped), and the caller goes on waiting, unless another goroutine runs
// the connection already.
func (c *conn) park() bool {
	p := c.s.poller
	if !p.register(c) {
		return false // the poller stopped: wait here
	}
	// Everything this goroutine writes of c is written before parked is
	// set: from then on another goroutine may run c.
	id, add := c.pollID, !c.pollAdded
	c.pollAdded = true
	c.parked.Store(true)
	if p.arm(c.sock, id, add) && !p.stopped() {
		return true
	}
	// Not parked: unless an abort (or the stopping poller) has resumed the
	// connection already, wait here.
	p.take(id)
	return !c.parked.CompareAndSwap(true, false)
}

// unpark resumes a parked connection in a new goroutine; it does nothing to
// one that runs. The goroutine's owner is the connection's place in s.wg.
func (c *conn) unpark() {
	if c.parked.CompareAndSwap(true, false) {
		go c.run()
	}
}

// canPark reports whether the connection may park when idle.
func (c *conn) canPark() bool { return c.sock != nil && c.s.poller != nil }
