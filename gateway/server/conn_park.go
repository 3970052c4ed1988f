package server

import (
	"errors"
	"os"
	"time"
)

// An idle plain TCP connection has no goroutine. When its read loop finds
// nothing to read and nothing to wait for (no read buffered, no delivery
// awaiting acknowledgement, no inbound budget wait), it waits parkAfter in
// the runtime's poller as any read does; if no byte comes, it parks: it
// registers its socket in the server's epoll set (poller_linux.go) and its
// goroutine returns. The first of these resumes it in a new goroutine
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

// parkAfter is how long an idle connection waits for its next byte in its
// own goroutine before it parks: a busy connection (a publisher, a
// subscriber acknowledging) never parks, and the few system calls of a park
// and resume are spent only on connections that were idle this long.
const parkAfter = 100 * time.Millisecond

// waitOrPark waits for the socket to have bytes and fills the read buffer
// with them, or parks the connection. It reports true when the connection
// parked: the caller's goroutine must then return at once. Any other
// outcome (bytes, an error, a park refused) leaves the read to the read
// loop, which meets the error again or, where the park was refused, waits
// in this goroutine. Only the read goroutine calls it.
func (c *conn) waitOrPark() bool {
	br, err := fillWithin(c.nc, c.sock, &c.src, parkAfter)
	if err == nil {
		c.br = br
		c.holdsReadBuf.Store(true)
		return false
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		// Closed or failed: the read loop's next read fails the same way
		// (a reset socket reads as its end).
		return false
	}
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
	// Not parked (the socket was closed meanwhile, or the poller stopped):
	// unless an abort (or the stopping poller) has resumed the connection
	// already, wait here.
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
