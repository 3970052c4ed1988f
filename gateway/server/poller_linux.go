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

// park registers c's socket, one-shot, for readability; the caller has
// marked c parked. It reports false when the socket cannot be registered
// (it was closed meanwhile, or the poller stopped): c must then wait in
// its own goroutine. Only c's goroutine calls park.
func (p *poller) park(c *conn) bool {
	p.mu.Lock()
	if p.mu.stopped {
		p.mu.Unlock()
		return false
	}
	if c.pollID == 0 {
		p.mu.nextID++
		c.pollID = p.mu.nextID
	}
	p.mu.parked[c.pollID] = c
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	setEventID(&ev, c.pollID)
	var ctlErr error
	// Control holds the socket open while it runs: the fd is c's.
	err := c.sock.Control(func(fd uintptr) {
		if c.pollAdded {
			ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
			return
		}
		ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		if ctlErr == nil {
			c.pollAdded = true
		}
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.take(c.pollID)
		return false
	}
	return true
}

// forget drops c's registration id: c has ended. Its socket, closed,
// has left the epoll set by itself.
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
