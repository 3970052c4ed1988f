package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	"github.com/stratamq/strata/internal/failpoint"
)

// conn drives one client connection: its read goroutine (serve) reads
// packets and feeds them to the session machine; a write goroutine
// (writeLoop), running only while there is something to send, writes what
// the machine sends, through a bounded queue (conn_write.go). Kicks
// and shutdown reach the machine from other goroutines under mu.
type conn struct {
	s  *Server
	l  *listener
	nc net.Conn
	// peer is the client's address (from the PROXY header where the
	// listener takes one).
	peer     netip.Addr
	accepted time.Time
	// br buffers reads; it is taken from a pool when a byte arrives and,
	// on a parkable connection, given back when the read loop has consumed
	// it all, so an idle socket holds no buffer (conn_lazy.go). Only the
	// read goroutine uses it.
	br       *bufio.Reader
	parkable bool
	// sock is the socket of a plain TCP connection, nil for others: only
	// those are parkable (their reads can wait for a byte without a
	// buffer; TLS, WebSocket and PROXY connections buffer in their own
	// layers). src is the source of a read buffer filled from sock
	// (conn_lazy.go).
	sock syscall.RawConn
	src  socketSource
	// holdsReadBuf mirrors br != nil for other goroutines (tests).
	holdsReadBuf atomic.Bool
	// parked: the connection has no goroutine; it waits in the server's
	// poller under pollID (pollAdded: its socket was put in the epoll set
	// once, so the next park re-arms it). conn_park.go.
	parked    atomic.Bool
	pollAdded bool
	pollID    uint64
	// waitSince is when the read loop's wait for a byte began (Unix ns),
	// 0 when it is not waiting, waitKicked once the park loop ended the
	// wait so that it parks (conn_park.go).
	waitSince atomic.Int64
	// head holds the first bytes of the connection, to read the Protocol
	// Level of a CONNECT the codec refused.
	head *headRecorder
	// wsTLS is the TLS state of a wss connection (from its HTTP request);
	// a tls connection's is read from the connection after its handshake.
	wsTLS *tls.ConnectionState

	// aborted is closed, with nc, when the connection is torn down without
	// flushing.
	aborted   chan struct{}
	abortOnce sync.Once
	// idle fires at the machine's deadline (armIdleLocked); set under mu.
	idle *time.Timer
	// io counts the Store and Release calls in flight; the session ends
	// only after them.
	io sync.WaitGroup

	// mu guards the machine and what its actions leave behind. It is held
	// only around machine calls and non-blocking queue operations, never
	// across network or backend I/O.
	mu struct {
		sync.Mutex
		m *session.Machine
		// closing: a Close was queued; later sends are dropped.
		closing bool
		// lostReason overrides the reason of a read error (slow consumer,
		// write error) that tore the connection down from this side.
		lostReason session.CloseReason
		// end is the EndSession to carry out when the connection is over.
		end *session.EndSession
		// guard is the guard of the session this connection opened.
		guard uint64
		// panicked records that a panic was recovered.
		panicked bool
		// ioClosed: finish is waiting for io; no Store or Release starts.
		ioClosed bool
		// ended: finish took this connection's messages in flight out of
		// the server's count (whatever the machine still holds is no
		// longer in flight on this gateway).
		ended bool
		// entries maps the machine's entry ids to the router's
		// (conn_entries.go).
		entries entryMap
		// idleAt is when the idle timer is set to fire; zero when it is
		// not set.
		idleAt time.Time
		// outq holds the packets waiting for the writer; writerDone is
		// the running writer's, closed when it returns, nil while none
		// runs (conn_write.go). noWriter: finish began; nothing more is
		// queued and no writer starts.
		outq       []outItem
		writerDone chan struct{}
		noWriter   bool
		// writerWake wakes a writer that waits for more (writerLinger);
		// writerIdle: it waits, with nothing queued or being written.
		writerWake chan struct{}
		writerIdle bool
		// inboundWait: the read loop waits for the inbound budget;
		// inboundPeak is the most inbound bytes seen held (conn_budget.go).
		inboundWait bool
		inboundPeak int
	}
	// inboundFreed wakes the read loop waiting for the inbound budget.
	inboundFreed chan struct{}
	// rd is the keep-alive deadline shift while the read loop waited for
	// the inbound budget (conn_budget.go); guarded by mu.
	rd struct {
		machine time.Time
		extra   time.Duration
	}
}

type outItem struct {
	b     []byte
	typ   packet.Type
	close bool
	// qos and retain describe a PUBLISH, for failpoints.
	qos    byte
	retain bool
}

func newConn(s *Server, l *listener, nc net.Conn, peer netip.Addr, accepted time.Time) *conn {
	c := &conn{
		s:        s,
		l:        l,
		nc:       nc,
		peer:     peer,
		accepted: accepted,
		head:     &headRecorder{r: nc},
		aborted:  make(chan struct{}),
	}
	c.sock = socketOf(nc)
	c.parkable = c.sock != nil
	c.src.head = c.head
	// The machine exists before the connection is tracked: the checkpoint
	// loop, kicks and shutdown may reach it from then on.
	c.mu.m = session.NewShared(&c.l.cfg, c.accepted)
	return c
}

// log returns the connection's logger. It is made on each use, not held:
// a connection logs rarely (debug messages, failures), and a fleet of idle
// connections would hold one each.
func (c *conn) log() *slog.Logger {
	return c.s.log.With("listener", c.l.id, "remote", c.nc.RemoteAddr().String())
}

// debug logs at debug level, when the server's logger takes it.
func (c *conn) debug(msg string, args ...any) {
	if c.s.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log().Debug(msg, args...)
	}
}

// serve runs the connection: its read loop, in this goroutine until the
// connection parks (conn_park.go) or ends. The caller has entered s.wg;
// the goroutine that ends the connection leaves it.
func (c *conn) serve() {
	c.s.metrics.connections.WithLabelValues(c.l.id).Inc()
	c.run()
}

// run reads until the connection parks or ends, and ends it: it waits for
// the writer, ends the session and leaves the server.
func (c *conn) run() {
	if c.readLoop() {
		return // parked: unpark runs the next goroutine
	}
	c.finish()
	if c.s.poller != nil {
		c.s.poller.forget(c)
	}
	c.s.untrack(c)
	c.s.metrics.connections.WithLabelValues(c.l.id).Dec()
	c.s.wg.Done()
}

// recoverPanic is the connection's panic boundary (STYLE.md rule 9): log
// with the stack, count, and tear down only this connection.
func (c *conn) recoverPanic(where string) {
	r := recover()
	if r == nil {
		return
	}
	c.s.metrics.panics.Inc()
	c.log().Error("panic recovered; closing the connection", "where", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	c.mu.Lock()
	c.mu.panicked = true
	c.mu.Unlock()
	c.abort()
}

// readLoop reads packets and feeds each to the machine under one lock
// acquisition, which also reads what the next read needs (the version and
// the maximum packet size) and arms the idle timer: no deadline syscall and
// no second lock per packet. It returns when the machine closes, or true
// when the connection parked (conn_park.go): another goroutine may then
// run it already, so nothing of c is touched on the way out.
func (c *conn) readLoop() (parked bool) {
	defer c.recoverPanic("read")
	defer func() {
		if parked {
			return
		}
		c.parkable = true // the loop is over: no read uses the buffer any more
		c.releaseReader()
	}()
	var version packet.Version
	var maxSize uint32
	// wait: the machine holds the inbound budget (conn_budget.go); the next
	// read waits for a Store to free room.
	var wait bool
	// quiet is when the last packet was read: an idle wait began then.
	quiet := time.Now()
	c.withMachineDo(func(m *session.Machine) {
		version, maxSize = m.Version(), m.MaxPacketSize()
		c.armIdleLocked(m)
	})
	for {
		var waited time.Duration
		if wait {
			waited = c.waitInbound()
		}
		if waited == 0 && c.br == nil && c.canPark() && c.waitOrPark(quiet) {
			return true
		}
		p, size, err := packet.ReadPacketSize(c.reader(), version, maxSize)
		now := time.Now()
		quiet = now
		var req *session.ConnectRequest
		closed, awaiting := false, false
		c.withMachineDo(func(m *session.Machine) {
			// The keep-alive is suspended while the gateway did not read.
			c.rd.extra += waited
			var acts []session.Action
			// hold: another whole packet is buffered, so the next read
			// does not wait and PUBLISHes read together make one Store
			// (released below after the last of them).
			hold := err == nil && c.packetBuffered()
			switch {
			case err == nil:
				c.countIn(p, size)
				if _, ok := p.(*packet.Pubrec); ok {
					failpoint.Hit("gateway-after-pubrec")
				}
				if hold && !m.HoldingStores() {
					c.applyLocked(m.HoldStores(now, true))
				}
				acts = m.Packet(now, p)
			case version == packet.VersionUnknown && isCode(err, packet.UnsupportedProtocolVersion):
				acts = m.UnsupportedProtocol(now, c.head.protocolLevel())
			case isCodecError(err):
				acts = m.Malformed(now, err)
			}
			req = c.applyLocked(acts)
			if err != nil && !m.Closed() {
				reason := session.ReasonNetworkError
				if c.mu.lostReason != "" {
					reason = c.mu.lostReason
				}
				c.applyLocked(m.Lost(now, reason))
			}
			closed = m.Closed() || m.Draining()
			version, maxSize = m.Version(), m.MaxPacketSize()
			wait = c.overBudgetLocked()
			awaiting = m.Inflight() > 0
			if m.HoldingStores() && (!hold || wait || closed) {
				// Nothing held while the loop waits or ends.
				c.applyLocked(m.HoldStores(now, false))
			}
			c.armIdleLocked(m)
		})
		if req != nil {
			closed = c.connect(*req)
			c.withMachineDo(func(m *session.Machine) {
				version, maxSize = m.Version(), m.MaxPacketSize()
				c.armIdleLocked(m)
			})
		}
		if closed {
			return
		}
		if !awaiting {
			// A subscriber with PUBLISHes unacknowledged is not idle: its
			// acks come next, so the connection keeps its read buffer and
			// reads them without a wait of its own (waitReadable) first.
			c.releaseReader()
		}
	}
}

// armIdleLocked makes the idle timer fire by the machine's deadline (keep
// alive, CONNECT timeout). The deadline moves later with most packets; the
// timer is reset only when it must fire earlier than it is set to, and
// otherwise re-armed when it fires early (onIdle). A connection without a
// deadline (Keep Alive 0, once connected) holds no timer.
func (c *conn) armIdleLocked(m *session.Machine) {
	d, ok := c.idleDeadlineLocked(m)
	if !ok || m.Closed() {
		c.dropIdleLocked()
		return
	}
	if !c.mu.idleAt.IsZero() && !d.Before(c.mu.idleAt) {
		return
	}
	c.setIdleLocked(d)
}

// setIdleLocked makes the idle timer fire at at.
func (c *conn) setIdleLocked(at time.Time) {
	c.mu.idleAt = at
	wait := time.Until(at)
	if c.idle == nil {
		c.idle = time.AfterFunc(wait, c.onIdle)
		return
	}
	c.idle.Reset(wait)
}

// dropIdleLocked stops the idle timer and lets it go. A run of onIdle
// already under way finds no deadline, or arms a new timer.
func (c *conn) dropIdleLocked() {
	if c.idle == nil {
		return
	}
	c.idle.Stop()
	c.idle = nil
	c.mu.idleAt = time.Time{}
}

// onIdle runs when the idle timer fires: at or after the machine's
// deadline it lets the machine act on the time (Tick: a keep-alive timeout
// closes the connection); before it, it re-arms.
func (c *conn) onIdle() {
	defer c.recoverPanic("idle")
	c.withMachineDo(func(m *session.Machine) {
		c.mu.idleAt = time.Time{}
		if m.Closed() {
			return
		}
		now := time.Now()
		if c.mu.inboundWait {
			// Not reading: the client's silence is not its own. Look again
			// in a second (the wait's length moves the deadline when it ends).
			c.setIdleLocked(now.Add(time.Second))
			return
		}
		if d, ok := c.idleDeadlineLocked(m); ok && !now.Before(d) {
			c.applyLocked(m.Tick(now))
		}
		c.armIdleLocked(m)
	})
}

// connect carries out a Connect action (admission, authentication, session
// open) without holding mu, and feeds the result back. It reports whether
// the machine closed.
func (c *conn) connect(req session.ConnectRequest) (closed bool) {
	res := c.s.openSession(c, req)
	c.withMachineDo(func(m *session.Machine) {
		c.applyLocked(m.ConnectDone(time.Now(), res))
		if res.Code == packet.Success {
			c.mu.guard = res.Guard
		}
		closed = m.Closed()
	})
	if res.Code == packet.Success {
		c.s.register(c, req.ClientID, res.Guard)
	}
	return closed
}

// store hands a Store action to the storage, which completes the
// connection's Stores in order; storeDone feeds each result back, and the
// machine starts further Stores from StoreDone. Called with mu held.
func (c *conn) storeLocked(req session.StoreRequest) {
	c.io.Add(1)
	submitted := false
	defer func() {
		if !submitted {
			c.io.Done() // Submit panicked: no completion will come
		}
	}()
	start := time.Now()
	n := len(req.Messages)
	c.s.opts.Storage.Submit(req, func(err error) {
		defer c.io.Done()
		defer c.recoverPanic("store")
		c.s.metrics.storeLatency.Observe(time.Since(start).Seconds())
		if err != nil {
			c.s.metrics.storeFailures.Inc()
			c.debug("store failed", "client_id", req.ClientID, "messages", n, "err", err)
		} else {
			failpoint.Hit("gateway-after-store")
			c.s.metrics.stored.Add(float64(n))
		}
		c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.StoreDone(time.Now(), err)) })
	})
	submitted = true
}

// release carries out a Release action (PUBREL) and feeds the result back.
func (c *conn) release(req session.ReleaseRequest) {
	defer c.io.Done()
	defer c.recoverPanic("release")
	ctx, cancel := context.WithTimeout(c.s.ctx, c.s.opts.BackendTimeout)
	start := time.Now()
	released, err := c.s.opts.Storage.Release(ctx, req)
	cancel()
	c.s.metrics.dsdLatency.WithLabelValues("release").Observe(time.Since(start).Seconds())
	if err != nil {
		c.s.metrics.storeFailures.Inc()
		c.debug("release failed", "client_id", req.ClientID, "packet_id", req.PacketID, "err", err)
	}
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.ReleaseDone(time.Now(), req.PacketID, released, err)) })
}

// kick closes the connection because its session was taken over.
func (c *conn) kick() {
	defer c.recoverPanic("kick")
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.Kick(time.Now())) })
}

// leaseLost closes the connection because the gateway lost its lease.
func (c *conn) leaseLost() {
	defer c.recoverPanic("lease lost")
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.LeaseLost(time.Now())) })
}

// checkpoint lets the machine commit its delivery progress.
func (c *conn) checkpoint() {
	defer c.recoverPanic("checkpoint")
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.Checkpoint(time.Now())) })
}

// shutdown closes the connection because the gateway stops.
func (c *conn) shutdown() {
	defer c.recoverPanic("shutdown")
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.Shutdown(time.Now())) })
}

func (c *conn) withMachineDo(f func(m *session.Machine)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.mu.m.Inflight()
	f(c.mu.m)
	if d := c.mu.m.Inflight() - before; d != 0 && !c.mu.ended {
		c.s.inflight.Add(int64(d))
	}
	c.inboundFreedLocked()
}

// applyLocked carries out actions that do not block; it returns a Connect
// request for the caller to carry out after releasing mu.
func (c *conn) applyLocked(acts []session.Action) *session.ConnectRequest {
	var req *session.ConnectRequest
	for _, a := range acts {
		switch a := a.(type) {
		case session.Send:
			c.sendLocked(a)
		case session.Connect:
			req = &a.Request
		case session.Store:
			if !c.mu.ioClosed {
				c.storeLocked(a.Request)
			}
		case session.Release:
			if !c.mu.ioClosed {
				c.io.Add(1)
				go c.release(a.Request)
			}
		case session.Denied:
			c.s.metrics.aclDenied.WithLabelValues(a.Access.String()).Inc()
			c.debug("ACL denied", "client_id", c.mu.m.ClientID(), "action", a.Access.String(), "topic", a.Topic)
		case session.EndSession:
			c.mu.end = &a
		case session.Close:
			c.s.metrics.closedFor(a.Reason)
			c.debug("closing", "client_id", c.mu.m.ClientID(), "reason", string(a.Reason))
			c.closeLocked()
		default:
			c.applyDeliveryLocked(a)
		}
	}
	return req
}

func (c *conn) sendLocked(a session.Send) {
	if c.mu.closing || c.mu.noWriter {
		return
	}
	if c.sendInlineLocked(a) {
		return
	}
	b, err := a.Packet.Append(nil, a.Version)
	if err != nil {
		// Invariant: the session machine builds only packets the codec
		// encodes; a refusal is a bug, not the client's doing.
		panic(fmt.Sprintf("gateway: cannot encode %s for %s: %v", a.Packet.Type(), a.Version, err))
	}
	if !c.enqueueLocked(publishItem(b, a.Packet)) {
		c.slowLocked()
		return
	}
	if p, ok := a.Packet.(*packet.Publish); ok {
		c.s.metrics.messagesOut[p.QoS%3].Inc()
	}
}

func publishItem(b []byte, p packet.Packet) outItem {
	it := outItem{b: b, typ: p.Type()}
	if pub, ok := p.(*packet.Publish); ok {
		it.qos, it.retain = pub.QoS, pub.Retain
	}
	return it
}

func (c *conn) closeLocked() {
	if c.mu.closing {
		return
	}
	c.mu.closing = true
	if !c.writingLocked() {
		c.abort() // everything sent is flushed: nothing to wait for
		return
	}
	if !c.enqueueLocked(outItem{close: true}) {
		c.slowLocked()
	}
}

// slowLocked tears down a connection whose outbound queue is full.
func (c *conn) slowLocked() {
	c.mu.closing = true
	if c.mu.lostReason == "" {
		c.mu.lostReason = session.ReasonSlowConsumer
	}
	c.abort()
}

// abort closes the network connection at once; the reader and the writer
// then end.
func (c *conn) abort() {
	c.abortOnce.Do(func() {
		close(c.aborted)
		_ = c.nc.Close()
	})
	c.unpark() // a parked connection's read now fails, and it ends
}

func (c *conn) writeFailed(err error) {
	c.debug("write failed", "err", err)
	c.mu.Lock()
	if c.mu.lostReason == "" {
		c.mu.lostReason = session.ReasonNetworkError
	}
	c.mu.Unlock()
	c.abort()
}

// finish ends the connection: teardown, then the session's end in the
// backend, then its registration. Each step runs inside the panic boundary
// (STYLE.md rule 9), so a panic there closes only this connection and the
// session still ends.
func (c *conn) finish() {
	c.mu.Lock()
	c.dropIdleLocked()
	c.mu.Unlock()
	c.teardown()
	c.endSession()
	c.mu.Lock()
	clientID, guard := c.mu.m.ClientID(), c.mu.guard
	// Messages the client never acknowledged (it left, or its last
	// PUBACKs were lost with a reset) are not in flight here any more:
	// the session resends them on its next connection.
	c.mu.ended = true
	if n := c.mu.m.Inflight(); n != 0 {
		c.s.inflight.Add(-int64(n))
	}
	c.mu.Unlock()
	c.s.unregister(c, clientID, guard)
}

// teardown waits for the writer (bounded by its write deadline) and the
// backend calls in flight, removes the entries and makes the delivery
// progress durable, unless a panic was recovered: the machine's state is
// then unknown and committing it could skip messages (the session resumes
// from its last checkpoint instead).
func (c *conn) teardown() {
	defer c.recoverPanic("teardown")
	if done := c.stopWriter(); done != nil {
		t := time.NewTimer(c.s.opts.WriteTimeout)
		select {
		case <-done:
		case <-t.C:
			c.abort()
			<-done
		}
		t.Stop()
	}
	c.abort()
	// Stores and Releases in flight end before the session does (each is
	// bounded by BackendTimeout).
	c.mu.Lock()
	c.mu.ioClosed = true
	c.mu.Unlock()
	c.io.Wait()
	c.removeEntries()
	if h := c.s.opts.hooks; h != nil && h.teardown != nil {
		h.teardown()
	}
	if !c.panicked() {
		c.finalCommit()
	}
}

func (c *conn) panicked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.panicked
}

// endSession ends the session in the backend: as the machine said, or,
// after a recovered panic, as an abnormal end (will published, expiry kept,
// reason internal_error), never as a clean one.
func (c *conn) endSession() {
	defer c.recoverPanic("end session")
	c.mu.Lock()
	end, guard, panicked := c.mu.end, c.mu.guard, c.mu.panicked
	c.mu.end = nil
	if panicked && guard != 0 {
		e := session.EndSession{ClientID: c.mu.m.ClientID(), Guard: guard, Will: true, Expiry: c.mu.m.Expiry(), Reason: session.ReasonInternalError}
		if end != nil {
			e.Expiry = end.Expiry
		}
		end = &e
	}
	c.mu.Unlock()
	if end == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.s.ctx, c.s.opts.BackendTimeout)
	err := c.s.opts.Backend.Disconnect(ctx, session.DisconnectRequest{
		ClientID: end.ClientID, Guard: end.Guard, Will: end.Will, Expiry: end.Expiry, Reason: end.Reason, Now: time.Now(),
	})
	cancel()
	switch {
	case err == nil, errors.Is(err, session.ErrStaleGuard):
	case errors.Is(err, session.ErrUnavailable):
		// dsd is unreachable or this gateway lost its lease: dsd
		// ends the session when the epoch dies, will included.
		c.debug("ending the session failed", "client_id", end.ClientID, "err", err)
	default:
		c.log().Warn("ending the session failed", "client_id", end.ClientID, "err", err)
	}
}

// countIn counts a packet read, of n bytes on the wire.
func (c *conn) countIn(p packet.Packet, n int) {
	c.s.metrics.received(p.Type(), n)
	if pub, ok := p.(*packet.Publish); ok {
		c.s.metrics.messagesIn[pub.QoS%3].Inc()
	}
}

func isCode(err error, code packet.ReasonCode) bool {
	got, ok := packet.CodeOf(err)
	return ok && got == code
}

// isCodecError reports whether err is the codec's verdict on the bytes
// rather than a failure to read them.
func isCodecError(err error) bool {
	_, ok := packet.CodeOf(err)
	return ok && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF)
}

// headRecorder keeps the first bytes read from a connection.
type headRecorder struct {
	r    io.Reader
	head [16]byte
	n    int
}

func (h *headRecorder) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.record(p[:n])
	return n, err
}

// record keeps what of b still fits the head.
func (h *headRecorder) record(b []byte) {
	if h.n < len(h.head) {
		h.n += copy(h.head[h.n:], b)
	}
}

// protocolLevel returns the Protocol Level byte of the CONNECT at the start
// of the connection, or 0 if the bytes do not reach it.
func (h *headRecorder) protocolLevel() byte {
	b := h.head[:h.n]
	i := 1
	for ; i < len(b) && i <= 4; i++ { // remaining length: 1 to 4 bytes
		if b[i]&0x80 == 0 {
			i++
			break
		}
	}
	if i+2 > len(b) {
		return 0
	}
	nameLen := int(b[i])<<8 | int(b[i+1])
	at := i + 2 + nameLen
	if at >= len(b) {
		return 0
	}
	return b[at]
}

// remoteAddr returns the client's IP address, or the zero value when it is
// not known.
func (c *conn) remoteAddr() netip.Addr { return c.peer }

// tlsState returns the connection's TLS state once its handshake is done,
// nil for a connection without TLS.
func (c *conn) tlsState() *tls.ConnectionState {
	if c.wsTLS != nil {
		return c.wsTLS
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		if st.HandshakeComplete {
			return &st
		}
	}
	return nil
}
