//go:build linux

package server

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller is the server's own epoll set, in which idle plain TCP
// connections wait for their next byte without a goroutine (conn_park.go).
// One goroutine (loop) waits on the set and, for each connection that
// turns readable (or hung up, or failed), starts the connection's goroutine
// again. Each socket is registered one-shot: it fires once and stays
// disarmed until its connection parks again. The sockets stay in the Go
// runtime's own poller too (an fd may be in several epoll sets); closing a
// socket takes it out of both.
//
// The server owns the poller: it is made by Listen and stopped (close) by
// Shutdown and Close once every connection has ended, so none is parked.
type poller struct {
	epfd int
	// stopFD is an eventfd in the set under id 0: a write to it stops loop.
	stopFD int
	done   chan struct{}
	mu     struct {
		sync.Mutex
		// parked maps a registration id to its parked connection. An id
		// is a connection's for its life (conn.pollID); ids are never
		// reused, so an event of a socket closed meanwhile finds nothing.
		parked map[uint64]*conn
		nextID uint64
		// stopped: loop has ended; nothing parks any more.
		stopped bool
	}
}

// newPoller makes the epoll set and starts its goroutine.
func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("gateway: epoll_create1: %w", err)
	}
	stopFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("gateway: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, 0)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stopFD, &ev); err != nil {
		_ = unix.Close(stopFD)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("gateway: epoll_ctl: %w", err)
	}
	p := &poller{epfd: epfd, stopFD: stopFD, done: make(chan struct{})}
	p.mu.parked = make(map[uint64]*conn)
	go p.loop()
	return p, nil
}

// setEventID stores id in the event's 64-bit user data (Fd and Pad are its
// two halves on every Linux architecture).
func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// loop waits for parked sockets to turn readable and resumes their
// connections, until close. If the wait fails for another reason, the
// poller stops taking connections and resumes every parked one (they then
// wait in their own goroutines, as if there were no poller).
func (p *poller) loop() {
	defer close(p.done)
	defer p.stop()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for i := range events[:n] {
			id := eventID(&events[i])
			if id == 0 {
				return
			}
			if c := p.take(id); c != nil {
				c.unpark()
			}
		}
	}
}

// stop refuses further parks and resumes the parked connections.
func (p *poller) stop() {
	p.mu.Lock()
	p.mu.stopped = true
	parked := p.mu.parked
	p.mu.parked = map[uint64]*conn{}
	p.mu.Unlock()
	for _, c := range parked {
		c.unpark()
	}
}

// take removes and returns the connection parked under id, nil when there
// is none (it was resumed otherwise, or ended).
func (p *poller) take(id uint64) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.mu.parked[id]
	delete(p.mu.parked, id)
	return c
}

// register enters c in the parked set under its id (made at its first
// park); false once the poller has stopped. Only c's goroutine calls it,
// before it marks c parked.
func (p *poller) register(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.stopped {
		return false
	}
	if c.pollID == 0 {
		p.mu.nextID++
		c.pollID = p.mu.nextID
	}
	p.mu.parked[c.pollID] = c
	return true
}

// arm puts the socket in the epoll set, one-shot, for readability under id
// (add: for the first time; else it is re-armed, and either way the other
// operation is tried when the kernel says so). It reads nothing of the
// connection, which may run in another goroutine once it is marked parked.
// False when the socket could not be armed (it was closed meanwhile).
func (p *poller) arm(sock syscall.RawConn, id uint64, add bool) bool {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	setEventID(&ev, id)
	var ctlErr error
	// Control holds the socket open while it runs: the fd is the
	// connection's.
	err := sock.Control(func(fd uintptr) {
		op, other := unix.EPOLL_CTL_MOD, unix.EPOLL_CTL_ADD
		if add {
			op, other = other, op
		}
		ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if errors.Is(ctlErr, unix.EEXIST) || errors.Is(ctlErr, unix.ENOENT) {
			ctlErr = unix.EpollCtl(p.epfd, other, int(fd), &ev)
		}
	})
	return err == nil && ctlErr == nil
}

// stopped reports whether the poller has stopped: a connection armed after
// it stopped would never be resumed by readiness.
func (p *poller) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.stopped
}

// forget drops c's registration: c has ended. Its socket, closed, has
// left the epoll set by itself.
func (p *poller) forget(c *conn) {
	if c.pollID != 0 {
		p.take(c.pollID)
	}
}

// close stops loop and releases the set. Call it once no connection can
// park any more.
func (p *poller) close() {
	var one [8]byte
	one[0] = 1 // an eventfd counter of 1, in the machine's byte order on little-endian hosts and nonzero on any
	if _, err := unix.Write(p.stopFD, one[:]); err != nil {
		// The loop cannot be woken; it has ended already only if the wait
		// failed. Nothing else can be done: leave the descriptors.
		select {
		case <-p.done:
		default:
			return
		}
	}
	<-p.done
	_ = unix.Close(p.stopFD)
	_ = unix.Close(p.epfd)
}
