package server

import (
	"bufio"
	"io"
	"sync"
)

// A connection holds no buffers while it is idle: its read buffer comes
// from a pool when a byte arrives and goes back once the read loop has
// consumed everything buffered (plain TCP, where the wait for the next byte
// needs no buffer: fillFromSocket), and its writer goroutine and outbound
// queue exist only while it has packets to send (conn_write.go). An idle
// connection, before or after CONNECT, costs its conn, its machine and its
// read goroutine (docs/security.md, docs/benchmarks.md give the measured
// figures).

// readBufferSize is the size of the pooled read buffers.
const readBufferSize = 4096

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// releaseReader gives the read buffer back to the pool when it holds
// nothing unread and the next read can wait without it. Only the read
// goroutine calls it.
func (c *conn) releaseReader() {
	if c.br == nil || !c.parkable || c.br.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
	c.holdsReadBuf.Store(false)
}

// reader is what the read loop reads packets from.
func (c *conn) reader() io.Reader {
	if c.br != nil {
		return c.br
	}
	return lazyReader{c}
}

// lazyReader waits for the next byte of a connection without a buffer,
// then gives the connection a buffer, which reads ahead as before (a peer
// closed with unread bytes would be sent a reset instead of a close).
type lazyReader struct{ c *conn }

func (r lazyReader) ReadByte() (byte, error) {
	if err := r.buffer(); err != nil {
		return 0, err
	}
	return r.c.br.ReadByte()
}

func (r lazyReader) Read(p []byte) (int, error) {
	if err := r.buffer(); err != nil {
		return 0, err
	}
	return r.c.br.Read(p)
}

func (r lazyReader) buffer() error {
	c := r.c
	if c.br != nil {
		return nil
	}
	if c.sock != nil {
		br, err := fillFromSocket(c.sock, &c.src)
		if err != nil {
			return err
		}
		c.br = br
	} else {
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(c.head)
	}
	c.holdsReadBuf.Store(true)
	return nil
}

// packetBuffered reports whether the read buffer holds a whole MQTT packet
// (fixed header, Remaining Length and body), which the next read takes
// without waiting. Only the read goroutine calls it.
func (c *conn) packetBuffered() bool {
	if c.br == nil {
		return false
	}
	n := c.br.Buffered()
	if n < 2 {
		return false
	}
	h, _ := c.br.Peek(min(n, 5))
	rl, shift := 0, 0
	for i := 1; i < len(h); i++ {
		rl |= int(h[i]&0x7f) << shift
		shift += 7
		if h[i]&0x80 == 0 {
			return i+1+rl <= n
		}
	}
	return false
}
