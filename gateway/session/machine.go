package session

import (
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

type state uint8

const (
	// stateAwaitConnect: nothing received yet; only CONNECT is allowed
	// [MQTT-3.1.0-1].
	stateAwaitConnect state = iota
	// stateConnecting: CONNECT accepted, waiting for the driver's
	// ConnectDone.
	stateConnecting
	// stateConnected: CONNACK 0x00 sent.
	stateConnected
	// stateClosed: a Close action was returned; every later event is
	// ignored.
	stateClosed
)

// Machine is the state of one client connection. See the package
// documentation for the events and actions; a Machine is not safe for
// concurrent use.
type Machine struct {
	// cfg is shared by the machines of a listener (NewShared): read only.
	cfg     *Config
	state   state
	version packet.Version
	// deadline is when Tick acts next (connect timeout, keep-alive); zero
	// when there is none.
	deadline time.Time
	// timeout is the keep-alive timeout in force, 0 for none.
	timeout time.Duration
	// authExpiry is when the client's credentials expire (zero: never);
	// Deadline is the earlier of it and deadline once connected.
	authExpiry time.Time

	req ConnectRequest
	// serverKeepAlive is sent in CONNACK when set.
	serverKeepAlive    uint16
	hasServerKeepAlive bool
	// expiryCapped says the CONNACK must carry the expiry in force.
	expiryCapped bool
	// connectExpiryZero: the CONNECT's Session Expiry Interval was 0, so a
	// DISCONNECT may not raise it [MQTT-3.14.2-2].
	connectExpiryZero bool

	sessionOpen bool
	guard       uint64
	expiry      uint32
	authorize   Authorizer
	closeReason CloseReason

	// aliases maps inbound Topic Aliases to topic names (MQTT 5).
	aliases map[uint16]string
	// in is the state of inbound PUBLISHes (QoS 1 and 2 exchanges, the
	// Store in flight).
	in inbound
	// drain is set by a client DISCONNECT while Stores are outstanding.
	drain *drainEnd
	// d is the outbound half: subscriptions and delivery.
	d delivery
	// now is the time of the event being handled.
	now time.Time
	// clientReceiveMax, clientMaxPacket and clientAliasMax are the
	// client's limits from CONNECT (MQTT 5).
	clientReceiveMax uint16
	clientMaxPacket  uint32
	clientAliasMax   uint16

	out []Action
}

// New returns the machine of a connection accepted at now.
func New(cfg Config, now time.Time) *Machine { return NewShared(&cfg, now) }

// NewShared is New with a configuration that many machines share (a
// listener's, which saves its copy in every idle connection); it must not
// change while they live.
func NewShared(cfg *Config, now time.Time) *Machine {
	m := &Machine{cfg: cfg}
	if cfg.ConnectTimeout > 0 {
		m.deadline = now.Add(cfg.ConnectTimeout)
	}
	return m
}

// Version is the protocol version of the connection: VersionUnknown until a
// CONNECT arrived. The driver decodes packets with it.
func (m *Machine) Version() packet.Version { return m.version }

// MaxPacketSize is the largest packet the driver may read (0: no limit):
// Config.MaxConnectPacketSize until a CONNECT arrived, so an unauthenticated
// client cannot make the gateway read a large packet.
func (m *Machine) MaxPacketSize() uint32 {
	if m.state == stateAwaitConnect && m.cfg.MaxConnectPacketSize > 0 &&
		(m.cfg.MaxPacketSize == 0 || m.cfg.MaxConnectPacketSize < m.cfg.MaxPacketSize) {
		return m.cfg.MaxConnectPacketSize
	}
	return m.cfg.MaxPacketSize
}

// Deadline returns when Tick must be called next, if ever.
func (m *Machine) Deadline() (time.Time, bool) {
	d := m.deadline
	if m.state == stateConnected && !m.authExpiry.IsZero() && (d.IsZero() || m.authExpiry.Before(d)) {
		d = m.authExpiry
	}
	return d, !d.IsZero()
}

// Closed reports whether the connection has been told to close.
func (m *Machine) Closed() bool { return m.state == stateClosed }

// Connected reports whether CONNACK 0x00 has been sent and the connection
// is still open.
func (m *Machine) Connected() bool { return m.state == stateConnected }

// ClientID returns the client identifier (assigned or not), "" before
// CONNECT.
func (m *Machine) ClientID() string { return m.req.ClientID }

// Guard returns the guard of the opened session, 0 before.
func (m *Machine) Guard() uint64 { return m.guard }

// Expiry returns the Session Expiry Interval in force, in seconds.
func (m *Machine) Expiry() uint32 { return m.expiry }

// KeepAlive returns the keep-alive in force, in seconds.
func (m *Machine) KeepAlive() uint16 { return m.req.KeepAlive }

// CloseReason returns why the connection closed, "" while it is open.
func (m *Machine) CloseReason() CloseReason { return m.closeReason }

// Tick acts on the deadline when it has passed: a connection without CONNECT
// is closed, a connection whose keep-alive or credentials expired is closed
// abnormally.
func (m *Machine) Tick(now time.Time) []Action {
	m.now = now
	if dl, ok := m.Deadline(); !ok || now.Before(dl) {
		return nil
	}
	if m.state == stateConnected && !m.authExpiry.IsZero() && !now.Before(m.authExpiry) {
		// The token the client authenticated with expired. 0xA0 (maximum
		// connect time) says the server ended the connection at a time
		// limit, so the client reconnects with a fresh token.
		m.abort(ReasonAuthExpired, packet.MaximumConnectTime)
		return m.flush()
	}
	switch m.state {
	case stateAwaitConnect:
		m.end(ReasonConnectTimeout, false)
	case stateConnected:
		// [MQTT-3.1.2-22] (v5), [MQTT-3.1.2-24] (3.1.1): one and a half
		// times the keep-alive (backoff 0.75) without a packet.
		m.abort(ReasonKeepAliveTimeout, packet.KeepAliveTimeout)
	}
	return m.flush()
}

// Packet handles one decoded packet received at now.
func (m *Machine) Packet(now time.Time, p packet.Packet) []Action {
	m.now = now
	if m.drain != nil {
		return nil // after DISCONNECT [MQTT-3.14.4-1]: nothing more is read
	}
	switch m.state {
	case stateClosed:
		return nil
	case stateAwaitConnect:
		c, ok := p.(*packet.Connect)
		if !ok {
			m.end(ReasonProtocolError, false) // [MQTT-3.1.0-1]
			return m.flush()
		}
		m.connect(c)
		return m.flush()
	case stateConnecting:
		// The driver reads nothing until ConnectDone; a packet here is
		// the driver's bug, and the connection cannot go on.
		m.end(ReasonInternalError, true)
		return m.flush()
	}
	if m.timeout > 0 {
		m.deadline = now.Add(m.timeout)
	}
	if err := packet.Validate(p, m.version, packet.ValidateOptions{TopicAliasMaximum: m.cfg.TopicAliasMaximum}); err != nil {
		code, _ := packet.CodeOf(err)
		m.abort(reasonFor(code), code)
		return m.flush()
	}
	if _, ok := p.(*packet.Publish); !ok && m.in.hold {
		// Held messages go before anything else is handled (a DISCONNECT
		// drains the Stores in flight).
		m.in.hold = false
		m.storeNext()
	}
	switch p := p.(type) {
	case *packet.Publish:
		m.publish(p)
	case *packet.Puback:
		m.puback(p)
	case *packet.Pubrec:
		m.pubrec(p)
	case *packet.Pubcomp:
		m.pubcomp(p)
	case *packet.Pubrel:
		m.pubrel(p)
	case *packet.Subscribe:
		m.subscribe(p)
	case *packet.Unsubscribe:
		m.unsubscribe(p)
	case *packet.Pingreq:
		m.send(&packet.Pingresp{}) // [MQTT-3.12.4-1]
	case *packet.Disconnect:
		m.clientDisconnect(p)
	case *packet.Connect:
		m.abort(ReasonProtocolError, packet.ProtocolError) // [MQTT-3.1.0-2]
	case *packet.Auth:
		// No Authentication Method was agreed in CONNECT [MQTT-4.12.0-6]
		// (v5 section 4.12).
		m.abort(ReasonProtocolError, packet.ProtocolError)
	default:
		// CONNACK, SUBACK, UNSUBACK and PINGRESP only go to clients.
		m.abort(ReasonProtocolError, packet.ProtocolError)
	}
	m.maybeCommit()
	return m.flush()
}

// Checkpoint commits the session's acknowledgement progress when
// Config.CheckpointInterval has passed since the last checkpoint; the
// driver calls it periodically.
func (m *Machine) Checkpoint(now time.Time) []Action {
	m.now = now
	if m.state == stateConnected {
		m.checkpoint(now)
	}
	return m.flush()
}

// Malformed handles a packet that did not decode (err from the codec): a
// Malformed Packet, a Protocol Error the codec detects, or a packet over the
// maximum size. MQTT 5 clients get DISCONNECT with the code first
// [MQTT-4.13.1-1]; others are closed [MQTT-4.8.0-1] (3.1.1).
func (m *Machine) Malformed(now time.Time, err error) []Action {
	code, ok := packet.CodeOf(err)
	if !ok {
		code = packet.MalformedPacket
	}
	m.abort(reasonFor(code), code)
	return m.flush()
}

// UnsupportedProtocol handles a CONNECT whose protocol name or level the
// codec does not know; level is the Protocol Level byte as sent (0 if the
// driver could not see it). A client asking for a level above 5 is answered
// in MQTT 5 (CONNACK 0x84), any other in MQTT 3.1.1 (CONNACK 0x01)
// [MQTT-3.1.2-2].
func (m *Machine) UnsupportedProtocol(now time.Time, level byte) []Action {
	if m.state != stateAwaitConnect {
		return m.Malformed(now, packet.ProtocolError)
	}
	v, code := packet.V311, packet.ReasonCode(packet.ConnectRefusedProtocolVersion)
	if level > byte(packet.V5) {
		v, code = packet.V5, packet.UnsupportedProtocolVersion
	}
	m.out = append(m.out, Send{Packet: &packet.Connack{ReasonCode: code}, Version: v})
	m.end(ReasonConnectRefused, false)
	return m.flush()
}

// Lost handles the end of the connection from below: end of stream, a
// read or write error, a client too slow to take its packets. The close is
// abnormal (the will is published).
func (m *Machine) Lost(now time.Time, reason CloseReason) []Action {
	if m.state == stateClosed || m.drain != nil {
		return nil // a draining connection ends when its Stores are done
	}
	m.end(reason, true)
	return m.flush()
}

// Kick handles a takeover: another connection opened the session. MQTT 5
// clients get DISCONNECT 0x8E.
func (m *Machine) Kick(now time.Time) []Action {
	m.abort(ReasonTakenOver, packet.SessionTakenOver)
	return m.flush()
}

// Shutdown handles the gateway stopping: MQTT 5 clients get DISCONNECT 0x8B
// and may resume their session on another gateway.
func (m *Machine) Shutdown(now time.Time) []Action {
	m.abort(ReasonShutdown, packet.ServerShuttingDown)
	return m.flush()
}

// LeaseLost handles the gateway losing its lease with dsd: every
// connection closes abnormally (the will stays armed in dsd) and MQTT 5
// clients get DISCONNECT 0x89 (server busy), so they reconnect, here once
// dsd is back or to another gateway. 0x88 (server unavailable) is a CONNACK
// code only.
func (m *Machine) LeaseLost(now time.Time) []Action {
	m.abort(ReasonLeaseLost, packet.ServerBusy)
	return m.flush()
}

// abort ends the connection from the server's side, abnormally: MQTT 5
// clients that are connected get DISCONNECT code first.
func (m *Machine) abort(reason CloseReason, code packet.ReasonCode) {
	if m.state == stateClosed {
		return
	}
	if m.state == stateConnected && m.version == packet.V5 {
		m.send(&packet.Disconnect{ReasonCode: code})
	}
	m.end(reason, true)
}

// end ends the session's hold (if one was opened) and closes.
func (m *Machine) end(reason CloseReason, will bool) {
	if m.sessionOpen {
		m.sessionOpen = false
		m.out = append(m.out, EndSession{
			ClientID: m.req.ClientID,
			Guard:    m.guard,
			Will:     will && m.req.Will != nil,
			Expiry:   m.expiry,
			Reason:   reason,
		})
	}
	m.out = append(m.out, Close{Reason: reason})
	m.state = stateClosed
	m.closeReason = reason
	m.deadline = time.Time{}
}

func (m *Machine) send(p packet.Packet) {
	m.out = append(m.out, Send{Packet: p, Version: m.version})
}

func (m *Machine) flush() []Action {
	m.countAliases()
	out := m.out
	m.out = nil
	return out
}

// v5Code returns code for MQTT 5 and Success (which encodes as nothing)
// before it.
func (m *Machine) v5Code(code packet.ReasonCode) packet.ReasonCode {
	if m.version == packet.V5 {
		return code
	}
	return packet.Success
}

func reasonFor(code packet.ReasonCode) CloseReason {
	switch code {
	case packet.MalformedPacket:
		return ReasonMalformed
	case packet.PacketTooLarge:
		return ReasonPacketTooLarge
	case packet.ImplementationSpecificError, packet.QoSNotSupported, packet.RetainNotSupported,
		packet.SubscriptionIdentifiersNotSupported, packet.SharedSubscriptionsNotSupported,
		packet.WildcardSubscriptionsNotSupported:
		return ReasonNotSupported
	}
	return ReasonProtocolError
}
