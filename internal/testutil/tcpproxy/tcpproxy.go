// Package tcpproxy is a userspace TCP proxy for tests that partition
// processes: it forwards every connection it accepts on a loopback port to
// a target, and can be told at run time to stop forwarding in one direction
// or both, and to forward again.
//
// A blocked direction looks like a network partition, not like a crash:
// its bytes are held (not delivered, not discarded) and its connections stay
// open, as TCP keeps retransmitting over a partition; once the direction
// passes again the held bytes follow in order. An end of stream (the sender
// closed its side) is held the same way. DropConns closes the connections
// instead, as a reset or a timed-out TCP connection ends them. A connection
// accepted while blocked is accepted (the kernel completes the handshake)
// and dialed through to the target, but carries nothing until it passes.
//
// Each connection may carry a label (Options.Label: which process dialed
// it, say), and a mode may be set for one label: so a proxy in front of one
// server can cut the connections of one client while the others flow.
//
// Every goroutine belongs to the proxy: Close stops them and waits for them.
package tcpproxy

import (
	"errors"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode says which directions of a connection are blocked. Up is from the
// side that dialed the proxy (the client) to the target, Down the other
// way.
type Mode uint8

const (
	// Pass forwards both ways.
	Pass Mode = 0
	// BlockUp holds the client's bytes; the target's still flow.
	BlockUp Mode = 1
	// BlockDown holds the target's bytes; the client's still flow.
	BlockDown Mode = 2
	// Block holds both directions: a partition.
	Block = BlockUp | BlockDown
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case BlockUp:
		return "block-up"
	case BlockDown:
		return "block-down"
	case Block:
		return "block"
	}
	return "mode?"
}

// Options tune a Proxy; the zero value labels nothing.
type Options struct {
	// Label, when set, names each accepted connection (its argument is the
	// client's side of it); SetLabel then applies to the connections of
	// one name. It runs before the connection forwards anything.
	Label func(client net.Conn) string
	// DialTimeout bounds the dial to the target. Default 5 s.
	DialTimeout time.Duration
}

// Proxy forwards the connections accepted on Addr to its target.
type Proxy struct {
	target string
	opts   Options
	ln     net.Listener
	wg     sync.WaitGroup
	// up and down count the bytes forwarded each way.
	up, down atomic.Int64
	mu       struct {
		sync.Mutex
		mode   Mode
		labels map[string]Mode
		// changed is closed and replaced at every change of a mode: it
		// wakes the held directions.
		changed  chan struct{}
		conns    map[*conn]struct{}
		accepted map[string]int // connections accepted, by label
		closed   bool
	}
}

// conn is one proxied connection: the client's side and the target's.
type conn struct {
	label          string
	client, server net.Conn
	once           sync.Once
	done           chan struct{} // closed by close
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.client.Close()
		_ = c.server.Close()
	})
}

// New listens on a free 127.0.0.1 port and forwards what it accepts to
// target (host:port), passing both ways until told otherwise.
func New(target string, opts Options) (*Proxy, error) {
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, opts: opts, ln: ln}
	p.mu.labels = map[string]Mode{}
	p.mu.changed = make(chan struct{})
	p.mu.conns = map[*conn]struct{}{}
	p.mu.accepted = map[string]int{}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.accept()
	}()
	return p, nil
}

// Addr is the proxy's address, which clients dial instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set sets the mode of every connection, present and future (a label's
// mode, SetLabel, adds to it).
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.mode = m
	p.changedLocked()
}

// SetLabel sets the mode of the connections labeled label, present and
// future: a connection's directions are blocked when the proxy's mode
// (Set) or its label's blocks them.
func (p *Proxy) SetLabel(label string, m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == Pass {
		delete(p.mu.labels, label)
	} else {
		p.mu.labels[label] = m
	}
	p.changedLocked()
}

// Heal passes every connection both ways again: the proxy's mode and every
// label's are Pass; held bytes are delivered.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.mode = Pass
	clear(p.mu.labels)
	p.changedLocked()
}

func (p *Proxy) changedLocked() {
	close(p.mu.changed)
	p.mu.changed = make(chan struct{})
}

// Stats are what a proxy forwarded so far.
type Stats struct {
	// Up and Down are the bytes forwarded client → target and back.
	Up, Down int64
	// Open is the connections open now; Accepted the connections
	// accepted, by label.
	Open     int
	Accepted map[string]int
}

// Stats reports what the proxy forwarded.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Up: p.up.Load(), Down: p.down.Load(), Open: len(p.mu.conns), Accepted: maps.Clone(p.mu.accepted)}
}

// DropConns closes every open connection (both sides, bytes held
// discarded) and returns how many; new ones are accepted as before.
func (p *Proxy) DropConns() int {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.mu.conns))
	for c := range p.mu.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return len(conns)
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.mu.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.DropConns()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		cc, err := p.ln.Accept()
		if err != nil {
			return // Close closed the listener (a test proxy does not retry other Accept errors)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(cc)
		}()
	}
}

// serve labels the connection, dials the target and forwards both ways
// until both directions ended or the connection is closed.
func (p *Proxy) serve(cc net.Conn) {
	label := ""
	if p.opts.Label != nil {
		label = p.opts.Label(cc)
	}
	sc, err := net.DialTimeout("tcp", p.target, p.opts.DialTimeout)
	if err != nil {
		_ = cc.Close() // the target is down: the client sees its connection end
		return
	}
	c := &conn{label: label, client: cc, server: sc, done: make(chan struct{})}
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.mu.conns[c] = struct{}{}
	p.mu.accepted[label]++
	p.mu.Unlock()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.mu.conns, c)
		p.mu.Unlock()
	}()
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() {
		defer pumps.Done()
		p.pump(c, BlockUp, cc, sc, &p.up)
	}()
	go func() {
		defer pumps.Done()
		p.pump(c, BlockDown, sc, cc, &p.down)
	}()
	pumps.Wait()
}

// pump copies src to dst, holding each chunk (and the end of stream)
// while dir is blocked. A read or write error other than the end of
// stream closes the whole connection; the end of stream half-closes dst.
func (p *Proxy) pump(c *conn, dir Mode, src, dst net.Conn, count *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.await(c, dir) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				c.close()
				return
			}
			count.Add(int64(n))
		}
		if err != nil {
			if !p.await(c, dir) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite()
				return
			}
			c.close()
			return
		}
	}
}

// await waits until dir of c is not blocked (true) or c is closed (false).
func (p *Proxy) await(c *conn, dir Mode) bool {
	for {
		p.mu.Lock()
		blocked := (p.mu.mode|p.mu.labels[c.label])&dir != 0
		changed := p.mu.changed
		p.mu.Unlock()
		if !blocked {
			return true
		}
		select {
		case <-changed:
		case <-c.done:
			return false
		}
	}
}
