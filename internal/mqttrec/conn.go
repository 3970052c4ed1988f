package mqttrec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// Errors returned by the client. Server refusals are also returned as the
// packet.ReasonCode they carry, wrapped.
var (
	// ErrConnectionLost: the connection ended while a call waited for an
	// answer. An outbound QoS 1 or 2 message stays in the Session.
	ErrConnectionLost = errors.New("mqttrec: connection lost")
	// ErrClosed: the connection was closed by this client.
	ErrClosed = errors.New("mqttrec: connection closed")
	// ErrRefused: the server answered with a failure reason code.
	ErrRefused = errors.New("mqttrec: refused by server")
	// ErrNoPacketID: all 65,535 outbound packet identifiers are in use.
	ErrNoPacketID = errors.New("mqttrec: no free packet identifier")
)

// ServerDisconnectError is the end of a connection by a server DISCONNECT
// (MQTT 5.0).
type ServerDisconnectError struct {
	Code packet.ReasonCode
}

func (e *ServerDisconnectError) Error() string {
	return fmt.Sprintf("mqttrec: server sent DISCONNECT %#02x (%v)", byte(e.Code), e.Code)
}

// Options configure one connection.
type Options struct {
	// Version is packet.V311 or packet.V5 (also V31). Default V5.
	Version packet.Version
	// ClientID is the Client Identifier.
	ClientID string
	// CleanStart is Clean Start (v5) or Clean Session (3.1.1).
	CleanStart bool
	// SessionExpiry is the Session Expiry Interval in seconds (v5; 0 is
	// not sent).
	SessionExpiry uint32
	// KeepAlive in seconds; when not 0 the client sends PINGREQ so that the
	// server hears from it at least that often (0: no pings).
	KeepAlive uint16
	// ReceiveMaximum is sent in CONNECT when not 0 (v5), and checked.
	ReceiveMaximum uint16
	// Username and Password are sent when not empty (a nil Password is
	// not sent, an empty non-nil one is).
	Username string
	Password []byte
	// MaxPacketSize bounds received packets (0: the protocol's limit).
	MaxPacketSize uint32
	// WithholdPuback, WithholdPubrec and WithholdPubcomp withhold that
	// many of the first acknowledgements of each kind this connection
	// would send (see Conn.Withhold). They apply from the first packet,
	// before the server can send any queued message.
	WithholdPuback, WithholdPubrec, WithholdPubcomp int
	// Paused starts the connection without reading after CONNACK (see
	// Conn.Resume).
	Paused bool
}

// Conn is one network connection of a Session.
type Conn struct {
	s       *Session
	v       packet.Version
	num     int
	nc      net.Conn
	br      *bufio.Reader
	opts    Options
	connack *packet.Connack

	// w queues packets for the writer goroutine (writer.go).
	w writeQueue

	closing   chan struct{} // closed when this client ends the connection
	closeOnce sync.Once
	done      chan struct{} // closed when the reader has ended
	wg        sync.WaitGroup

	mu struct {
		sync.Mutex
		// waiters get the packet that completes an outbound exchange.
		waiters map[uint16]chan packet.Packet
		pings   []chan struct{}
		// withhold counts acknowledgements still to withhold, by type.
		withhold map[packet.Type]int
		withheld []packet.Packet
		// unacked are inbound QoS 1 identifiers whose PUBACK is withheld.
		unacked map[uint16]msgKey
		// resume is non-nil while paused; Resume closes it.
		resume   chan struct{}
		err      error
		lastSend time.Time
	}
}

// Connect dials addr over TCP, sends CONNECT and reads CONNACK. A CONNACK
// with a failure code returns the CONNACK and an error matching ErrRefused.
// ctx bounds the dial and the handshake only.
func Connect(ctx context.Context, addr string, s *Session, opts Options) (*Conn, *packet.Connack, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("mqttrec: dial %s: %w", addr, err)
	}
	c, ack, err := handshake(ctx, nc, s, opts)
	if err != nil {
		nc.Close()
		return nil, ack, err
	}
	return c, ack, nil
}

func handshake(ctx context.Context, nc net.Conn, s *Session, opts Options) (*Conn, *packet.Connack, error) {
	if opts.Version == 0 {
		opts.Version = packet.V5
	}
	c := &Conn{s: s, v: opts.Version, nc: nc, br: bufio.NewReader(nc), opts: opts,
		closing: make(chan struct{}), done: make(chan struct{})}
	c.mu.waiters = map[uint16]chan packet.Packet{}
	c.mu.unacked = map[uint16]msgKey{}
	c.mu.withhold = map[packet.Type]int{
		packet.PUBACK: opts.WithholdPuback, packet.PUBREC: opts.WithholdPubrec, packet.PUBCOMP: opts.WithholdPubcomp}
	if opts.Paused {
		c.mu.resume = make(chan struct{})
	}

	// The handshake obeys ctx through the connection deadline.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	b, err := c.connectPacket().Append(nil, c.v)
	if err != nil {
		return nil, nil, fmt.Errorf("mqttrec: CONNECT: %w", err)
	}
	if _, err := nc.Write(b); err != nil {
		return nil, nil, fmt.Errorf("mqttrec: send CONNECT: %w", err)
	}
	p, err := packet.ReadPacket(c.br, c.v, opts.MaxPacketSize)
	if err != nil {
		return nil, nil, fmt.Errorf("mqttrec: read CONNACK: %w", err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		return nil, nil, fmt.Errorf("mqttrec: got %v instead of CONNACK: %w", p.Type(), ErrConnectionLost)
	}
	if ack.ReasonCode != 0 {
		return nil, ack, fmt.Errorf("mqttrec: CONNACK %#02x: %w", byte(ack.ReasonCode), ErrRefused)
	}
	if !stop() && ctx.Err() != nil {
		return nil, ack, ctx.Err()
	}
	_ = nc.SetDeadline(time.Time{})

	c.connack = ack
	c.num = s.startConn(ack.SessionPresent)
	if ack.SessionPresent && opts.CleanStart {
		c.violation(SessionPresentAfterCleanStart, 0, "CONNACK Session Present 1 after a clean start")
	}
	c.w.init()
	c.mu.lastSend = time.Now()
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	if ka := c.keepAlive(); ka > 0 {
		c.wg.Add(1)
		go c.pinger(ka)
	}
	return c, ack, nil
}

func (c *Conn) connectPacket() *packet.Connect {
	o := c.opts
	cp := &packet.Connect{Version: c.v, CleanStart: o.CleanStart, KeepAlive: o.KeepAlive, ClientID: o.ClientID}
	if c.v == packet.V5 {
		if o.SessionExpiry != 0 {
			cp.Properties.Present.Add(packet.PropSessionExpiryInterval)
			cp.Properties.SessionExpiryInterval = o.SessionExpiry
		}
		if o.ReceiveMaximum != 0 {
			cp.Properties.Present.Add(packet.PropReceiveMaximum)
			cp.Properties.ReceiveMaximum = o.ReceiveMaximum
		}
	}
	if o.Username != "" {
		cp.UsernameFlag, cp.Username = true, o.Username
	}
	if o.Password != nil {
		cp.PasswordFlag, cp.Password = true, o.Password
	}
	return cp
}

// keepAlive is the interval the client must keep: the Server Keep Alive
// when the server sent one [MQTT-3.2.2-21] (v5), else the client's own.
func (c *Conn) keepAlive() time.Duration {
	ka := c.opts.KeepAlive
	if c.v == packet.V5 && c.connack.Properties.Present.Has(packet.PropServerKeepAlive) {
		ka = c.connack.Properties.ServerKeepAlive
	}
	return time.Duration(ka) * time.Second
}

// Connack returns the CONNACK that opened the connection.
func (c *Conn) Connack() *packet.Connack { return c.connack }

// Session returns the connection's Session.
func (c *Conn) Session() *Session { return c.s }

// Done is closed when the connection has ended, for any reason.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended once Done is closed: ErrClosed when
// this client closed it, a *ServerDisconnectError, an error matching
// packet.ErrMalformed, or one matching ErrConnectionLost. It is nil while
// the connection is up.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.err
}

// Close drops the connection without DISCONNECT, as a crash would (the
// server then publishes the Will, and keeps the session). It waits for the
// connection's goroutines and is safe to call more than once.
func (c *Conn) Close() error {
	c.shut()
	c.wg.Wait()
	return nil
}

// Disconnect sends DISCONNECT, after every packet queued before it, and
// closes the connection. d may be nil (a normal disconnection); in MQTT 5.0
// it can carry a reason code and a new Session Expiry Interval.
func (c *Conn) Disconnect(d *packet.Disconnect) error {
	if d == nil {
		d = &packet.Disconnect{}
	}
	err := c.send(d)
	if err == nil {
		err = c.flush(disconnectFlushTimeout)
	}
	c.shut()
	c.wg.Wait()
	return err
}

// shut closes the network connection once, marking the end as ours.
func (c *Conn) shut() {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.nc.Close()
	})
}

// end records why the connection ended (the first reason wins) and closes
// the socket.
func (c *Conn) end(err error) {
	c.mu.Lock()
	if c.mu.err == nil {
		select {
		case <-c.closing:
			c.mu.err = ErrClosed
		default:
			c.mu.err = err
		}
	}
	c.mu.Unlock()
	c.closeOnce.Do(func() { c.nc.Close() })
}

func (c *Conn) violation(kind ViolationKind, id uint16, format string, args ...any) {
	c.s.violation(Violation{Time: time.Now(), Conn: c.num, Kind: kind, PacketID: id, Detail: fmt.Sprintf(format, args...)})
}

// pinger sends PINGREQ when nothing was sent for half the keep alive, so the
// server always hears from the client within it [MQTT-3.1.2-23].
func (c *Conn) pinger(ka time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(ka / 4)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		idle := time.Since(c.mu.lastSend)
		c.mu.Unlock()
		if idle >= ka/2 {
			if err := c.send(&packet.Pingreq{}); err != nil {
				return
			}
		}
	}
}
