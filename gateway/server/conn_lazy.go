package server

import (
	"bufio"
	"io"
)

// A connection holds no buffers while it is idle: its read buffer is made
// when the first byte arrives, and its writer goroutine and outbound queue
// when it first sends a packet (normally its CONNACK). An idle socket that has
// sent nothing costs its conn, its machine and its read goroutine
// (docs/security.md gives the measured figure).

// reader is what the read loop reads packets from.
func (c *conn) reader() io.Reader {
	if c.br != nil {
		return c.br
	}
	return lazyReader{c}
}

// lazyReader waits for the first byte of a connection without a buffer,
// then gives the connection its buffer, which reads ahead as before (a peer
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
	if r.c.br != nil {
		return nil
	}
	if err := waitReadable(r.c.nc); err != nil {
		return err
	}
	r.c.br = bufio.NewReaderSize(r.c.head, 4096)
	return nil
}

// startWriterLocked makes the outbound queue and starts the writer, once;
// false after finish has begun (then nothing more is sent).
func (c *conn) startWriterLocked() bool {
	if c.out != nil {
		return true
	}
	if c.mu.noWriter {
		return false
	}
	c.out = make(chan outItem, c.s.opts.OutboundQueue)
	go c.writeLoop()
	return true
}

// stopWriter lets finish wait for the writer: if it never started, none
// starts any more, and writerDone is closed here.
func (c *conn) stopWriter() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out == nil && !c.mu.noWriter {
		c.mu.noWriter = true
		close(c.writerDone)
	}
}
