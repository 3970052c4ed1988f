package mqttrec

import (
	"fmt"
	"sync"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// disconnectFlushTimeout bounds how long a DISCONNECT waits for the packets
// queued before it to be written.
const disconnectFlushTimeout = 5 * time.Second

// writeQueue holds encoded packets for the writer goroutine. The reader
// never writes to the socket itself: a server that stops reading while its
// own writes are blocked (mosquitto does, under load) would otherwise
// deadlock with a reader blocked in a write, each waiting for the other to
// read.
type writeQueue struct {
	mu struct {
		sync.Mutex
		buf []byte
		// queued and written count bytes, for flush.
		queued, written uint64
		// progress is closed and replaced after every write.
		progress chan struct{}
		err      error
	}
	wake chan struct{}
}

func (q *writeQueue) init() {
	q.wake = make(chan struct{}, 1)
	q.mu.progress = make(chan struct{})
}

// send queues one packet for writing. It fails if the packet cannot be
// encoded or the connection has already failed.
func (c *Conn) send(p packet.Packet) error {
	q := &c.w
	q.mu.Lock()
	if q.mu.err != nil {
		err := q.mu.err
		q.mu.Unlock()
		return err
	}
	n := len(q.mu.buf)
	b, err := p.Append(q.mu.buf, c.v)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.mu.buf = b
	q.mu.queued += uint64(len(b) - n)
	q.mu.Unlock()
	c.mu.Lock()
	c.mu.lastSend = time.Now()
	c.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// writeLoop writes queued packets, in batches, until the connection ends.
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	q := &c.w
	var spare []byte
	for {
		select {
		case <-q.wake:
		case <-c.done:
			return
		case <-c.closing:
			return
		}
		q.mu.Lock()
		b := q.mu.buf
		q.mu.buf = spare[:0]
		q.mu.Unlock()
		if len(b) == 0 {
			spare = b
			continue
		}
		_, err := c.nc.Write(b)
		q.mu.Lock()
		if err != nil {
			q.mu.err = fmt.Errorf("%w: %w", ErrConnectionLost, err)
		} else {
			q.mu.written += uint64(len(b))
		}
		close(q.mu.progress)
		q.mu.progress = make(chan struct{})
		q.mu.Unlock()
		if err != nil {
			c.end(fmt.Errorf("%w: write: %w", ErrConnectionLost, err))
			return
		}
		spare = b
	}
}

// flush waits until everything queued so far is written.
func (c *Conn) flush(timeout time.Duration) error {
	q := &c.w
	t := time.NewTimer(timeout)
	defer t.Stop()
	q.mu.Lock()
	target := q.mu.queued
	for q.mu.written < target && q.mu.err == nil {
		ch := q.mu.progress
		q.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
		case <-t.C:
			return fmt.Errorf("mqttrec: flush: %w", ErrConnectionLost)
		}
		q.mu.Lock()
		if isClosed(c.done) && q.mu.written < target {
			q.mu.Unlock()
			return ErrConnectionLost
		}
	}
	err := q.mu.err
	q.mu.Unlock()
	return err
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
