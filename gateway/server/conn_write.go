package server

import (
	"bufio"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	"github.com/stratamq/strata/internal/failpoint"
)

// The outbound side of a connection holds nothing while it has nothing to
// send: packets wait in a slice under mu (c.mu.outq, at most
// Options.OutboundQueue of them; a client that lets more pile up is
// disconnected as a slow consumer), and a writer goroutine runs only while
// the slice has packets. It takes them all at once, writes them through a
// pooled buffer, flushes, and exits when it finds the slice empty, giving
// the buffer back. An idle connection so costs no channel, no buffer and no
// writer goroutine (fleetbench measured 32 KiB for the 1,024-slot channel
// and 4 KiB for the buffer, per connection, when both lived as long as the
// connection).

// writerLinger is how long a writer that emptied the queue waits for more
// before it ends and gives its buffer back: a busy connection (a
// subscriber acknowledging one PUBLISH at a time, each answered by the next)
// keeps one writer instead of starting one per packet.
const writerLinger = 50 * time.Millisecond

// writeBufferSize is the size of the pooled write buffers.
const writeBufferSize = 4096

// maxSpareQueue bounds the slice a writer keeps for the next batch; a
// larger one (a burst) is dropped.
const maxSpareQueue = 64

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}

// enqueueLocked queues one packet for the writer, starting the writer if
// none runs; false when the queue is full (the caller tears the
// connection down) or finish has begun.
func (c *conn) enqueueLocked(it outItem) bool {
	if c.mu.noWriter {
		return false
	}
	if len(c.mu.outq) >= c.s.opts.OutboundQueue {
		return false
	}
	c.mu.outq = append(c.mu.outq, it)
	c.startWriterLocked()
	return true
}

// startWriterLocked starts a writer unless one runs, and wakes it when it
// lingers.
func (c *conn) startWriterLocked() {
	if c.mu.writerDone != nil {
		if c.mu.writerIdle {
			c.mu.writerIdle = false
			select {
			case c.mu.writerWake <- struct{}{}:
			default:
			}
		}
		return
	}
	done := make(chan struct{})
	c.mu.writerDone = done
	c.mu.writerWake = make(chan struct{}, 1)
	go c.writeLoop(done, c.mu.writerWake)
}

// writing reports whether packets are queued or being written (a writer
// that lingers with nothing to write does not count).
func (c *conn) writingLocked() bool { return c.mu.writerDone != nil && !c.mu.writerIdle }

// stopWriter lets finish wait for the writer: no writer starts any more;
// it returns the running writer's done channel, nil when none runs.
func (c *conn) stopWriter() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.noWriter = true
	if c.mu.writerIdle {
		c.mu.writerIdle = false
		select {
		case c.mu.writerWake <- struct{}{}:
		default:
		}
	}
	return c.mu.writerDone
}

// takeBatchLocked takes what is queued, handing spare (the slice of the
// previous batch, emptied) back as the new queue; nil when nothing is.
func (c *conn) takeBatchLocked(spare []outItem) []outItem {
	batch := c.mu.outq
	if len(batch) == 0 {
		return nil
	}
	if cap(spare) > maxSpareQueue {
		spare = nil
	}
	c.mu.outq = spare[:0]
	return batch
}

// writeLoop writes queued packets until the queue is empty, then ends
// (closing done); the next packet queued starts another.
func (c *conn) writeLoop(done, wake chan struct{}) {
	defer close(done)
	defer c.recoverPanic("write")
	var bw *bufio.Writer
	defer func() {
		if bw != nil {
			bw.Reset(nil)
			writerPool.Put(bw)
		}
	}()
	var batch []outItem
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	lingered := false
	for {
		c.mu.Lock()
		next := c.takeBatchLocked(batch)
		if next == nil && !lingered && !c.mu.noWriter {
			// Nothing now: wait a little for more before ending.
			c.mu.writerIdle = true
			c.mu.Unlock()
			lingered = true
			if linger == nil {
				linger = time.NewTimer(writerLinger)
			} else {
				linger.Reset(writerLinger)
			}
			select {
			case <-wake:
				if !linger.Stop() {
					<-linger.C
				}
			case <-linger.C:
			case <-c.aborted:
				return
			}
			continue
		}
		if next == nil {
			// Nothing more: this writer ends. Everything written was
			// flushed, so an idle connection holds no buffer.
			c.mu.outq = nil
			c.mu.writerDone = nil
			c.mu.writerWake = nil
			c.mu.writerIdle = false
			c.mu.Unlock()
			return
		}
		c.mu.writerIdle = false
		c.mu.Unlock()
		lingered = false
		batch = next
		select {
		case <-c.aborted:
			return
		default:
		}
		if bw == nil {
			bw = writerPool.Get().(*bufio.Writer)
			bw.Reset(c.nc)
		}
		if !c.writeBatch(bw, batch) {
			return
		}
		clear(batch) // drop the packets' bytes
	}
}

// writeBatch writes one batch and flushes it; false when the connection
// ended (a close item, or a write error).
func (c *conn) writeBatch(bw *bufio.Writer, batch []outItem) bool {
	// written counts PUBLISH packets written and not yet reported to the
	// machine, whose outbound window they hold.
	written := 0
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	for _, it := range batch {
		if it.close {
			_ = bw.Flush()
			c.abort()
			return false
		}
		if it.typ == packet.PUBREL {
			failpoint.Hit("gateway-before-pubrel")
		}
		_, err := bw.Write(it.b)
		if err == nil && failpoint.Armed() && it.typ == packet.PUBLISH {
			err = bw.Flush() // a failpoint after a send must find it on the wire
		}
		if err != nil {
			c.writeFailed(err)
			return false
		}
		c.s.metrics.sent(it.typ, len(it.b))
		if it.typ == packet.PUBLISH {
			written++
			failpoint.Hit("gateway-delivering")
			if it.qos == 2 {
				failpoint.Hit("gateway-after-qos2-send")
			}
			if it.retain {
				failpoint.Hit("gateway-after-retained-send")
			}
		}
		if written >= 64 {
			if err := bw.Flush(); err != nil {
				c.writeFailed(err)
				return false
			}
			c.reportWritten(written)
			written = 0
		}
	}
	if err := bw.Flush(); err != nil {
		c.writeFailed(err)
		return false
	}
	if written > 0 {
		c.reportWritten(written)
	}
	return true
}

// reportWritten tells the machine that n PUBLISH packets are on the wire.
func (c *conn) reportWritten(n int) {
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.Written(time.Now(), n)) })
}

// inlineMax bounds the bytes one inline write gathers; a larger packet
// goes to the writer.
const inlineMax = 16 << 10

// inlineWrite gathers the packets one apply sends while no writer runs
// (conn.mu.inline), written to the socket in one non-blocking write when
// the apply ends. It is pooled with its socket callback (fn, writeFD in
// readable_unix.go), made once, so an inline write allocates nothing: a
// closure would escape to the heap per write.
type inlineWrite struct {
	b    []byte
	pkts []outItem // per packet: its type (and PUBLISH's qos, retain); b is unused
	ends []int     // per packet: where its bytes end in b
	n    int
	err  error
	fn   func(fd uintptr) bool
}

var inlineWrites = sync.Pool{New: func() any {
	w := &inlineWrite{b: make([]byte, 0, 1024)}
	w.fn = w.writeFD
	return w
}}

func (w *inlineWrite) free() {
	if cap(w.b) > inlineMax {
		return // grown past the bound by one packet's encoding: let it go
	}
	w.b, w.pkts, w.ends, w.n, w.err = w.b[:0], w.pkts[:0], w.ends[:0], 0, nil
	inlineWrites.Put(w)
}

// inlineable reports whether a packet of type t may be written inline.
func inlineable(t packet.Type) bool {
	switch t {
	case packet.PUBLISH, packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP, packet.PINGRESP:
		return true
	}
	return false
}

// sendInlineLocked gathers a packet for an inline write, to a plain TCP
// socket, when nothing is queued and no writer is writing: written on the
// caller's goroutine when its apply ends (flushInlineLocked), in one
// system call with the other packets the apply sent. A publisher waiting
// for each PUBACK, or a subscriber whose PUBACK releases the next PUBLISH,
// otherwise costs a writer wake-up, a futex and a scheduler round, per
// message (a third of the gateway's CPU in the 100-publisher profile). It
// reports whether it took a (false: the caller flushes what was gathered,
// then queues a).
func (c *conn) sendInlineLocked(a session.Send) bool {
	if !inlineable(a.Packet.Type()) || c.sock == nil || c.writingLocked() || len(c.mu.outq) > 0 || failpoint.Armed() {
		return false
	}
	// A writer that lingers with nothing to write (writerIdle) takes mu
	// before it writes again, so the inline bytes go first.
	w := c.mu.inline
	if w == nil {
		w = inlineWrites.Get().(*inlineWrite)
		c.mu.inline = w
	}
	before := len(w.b)
	b, err := a.Packet.Append(w.b, a.Version)
	if err != nil || len(b) > inlineMax {
		w.b = b[:before]
		if err == nil && before > 0 {
			// Too much for one write with what was gathered: write that,
			// then try this one alone.
			c.flushInlineLocked()
			return c.sendInlineLocked(a)
		}
		return false // the writer takes it (and the caller reports an error)
	}
	w.b = b
	it := outItem{typ: a.Packet.Type()}
	if p, ok := a.Packet.(*packet.Publish); ok {
		it.qos, it.retain = p.QoS, p.Retain
		c.s.metrics.messagesOut[p.QoS%3].Inc()
	}
	w.pkts = append(w.pkts, it)
	w.ends = append(w.ends, len(b))
	return true
}

// flushInlineLocked writes what sendInlineLocked gathered. The write never
// waits: what the socket does not take at once (it is full, or failed)
// goes to the writer, in order, which reports any error. PUBLISH packets
// written are reported to the machine when the apply ends (applyLocked).
func (c *conn) flushInlineLocked() {
	w := c.mu.inline
	if w == nil {
		return
	}
	c.mu.inline = nil
	defer w.free()
	if len(w.b) == 0 {
		return
	}
	_ = c.sock.Write(w.fn)
	start, i := 0, 0
	for ; i < len(w.ends) && w.ends[i] <= w.n; i++ {
		it := w.pkts[i]
		c.s.metrics.sent(it.typ, w.ends[i]-start)
		if it.typ == packet.PUBLISH {
			c.mu.inlinePublished++
		}
		start = w.ends[i]
	}
	if i == len(w.ends) {
		return
	}
	// The socket did not take packet i whole: the rest goes to the writer,
	// one item per packet (it counts each).
	if w.err != nil && !errors.Is(w.err, syscall.EAGAIN) {
		c.debug("inline write failed; the writer takes over", "err", w.err)
	}
	rest := append([]byte(nil), w.b[w.n:]...)
	for ; i < len(w.ends); i++ {
		it := w.pkts[i]
		it.b = rest[max(start, w.n)-w.n : w.ends[i]-w.n]
		start = w.ends[i]
		if !c.enqueueLocked(it) {
			c.slowLocked()
			return
		}
	}
}
