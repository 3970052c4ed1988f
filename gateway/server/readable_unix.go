//go:build unix

package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
)

// socketOf returns the raw socket of a plain TCP connection, nil for any
// other (TLS, WebSocket and PROXY connections buffer in their own layers).
func socketOf(nc net.Conn) syscall.RawConn {
	if gc, ok := nc.(*gatedConn); ok {
		nc = gc.Conn
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// fillFromSocket waits until the socket has bytes (or an error) and reads
// them into a pooled buffer, which it returns. The read happens inside the
// poller's readiness callback, so that a packet that arrives after the
// buffer went back costs the two system calls of any blocking read (one
// that finds nothing, one that reads), not a peek, a second peek and a
// read; the buffer is taken only once bytes are there.
func fillFromSocket(rc syscall.RawConn, src *socketSource) (*bufio.Reader, error) {
	if src.fill == nil {
		src.fill = src.tryFill // one closure for the connection's life
	}
	src.br, src.err = nil, nil
	err := rc.Read(src.fill)
	br := src.br
	if err == nil {
		err = src.err
	}
	src.br, src.err = nil, nil
	return br, err
}

// tryFill is fillFromSocket's readiness callback: false (wait for the
// poller) when the socket has nothing yet.
func (s *socketSource) tryFill(fd uintptr) bool {
	b := readerPool.Get().(*bufio.Reader)
	s.fd, s.direct = int(fd), true
	b.Reset(s)
	_, err := b.Peek(1)
	s.direct = false
	if err == nil {
		s.br = b
		return true
	}
	b.Reset(nil)
	readerPool.Put(b)
	if errors.Is(err, syscall.EAGAIN) {
		return false
	}
	s.err = err
	return true
}

// socketSource is what a parkable connection's read buffer reads from:
// the socket itself, without waiting, while direct (inside
// fillFromSocket's callback), else the connection.
type socketSource struct {
	head   *headRecorder
	fd     int
	direct bool
	// fill is tryFill, and br and err its result (fillFromSocket).
	fill func(uintptr) bool
	br   *bufio.Reader
	err  error
}

func (s *socketSource) Read(p []byte) (int, error) {
	if !s.direct {
		return s.head.Read(p)
	}
	for {
		n, err := syscall.Read(s.fd, p)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		s.head.record(p[:n])
		return n, nil
	}
}

// writeFD is an inline write's callback (conn_write.go): it writes what
// the socket takes at once and never waits for the poller (the writer
// does), recording how far it got and what stopped it.
func (w *inlineWrite) writeFD(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			w.err = err
			break
		}
		w.n += m
	}
	return true
}
