package mqttrec

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// Message is one PUBLISH received from the server, as recorded.
type Message struct {
	// Time is when the packet was read.
	Time time.Time
	// Conn is the number of the connection it arrived on, counting from 1
	// within the Session.
	Conn int
	// Topic is the Topic Name.
	Topic string
	// Payload is a copy of the payload.
	Payload []byte
	// QoS, Dup and Retain are the PUBLISH header flags.
	QoS         byte
	Dup, Retain bool
	// PacketID is the Packet Identifier (0 for QoS 0).
	PacketID uint16
	// SubscriptionIDs are the Subscription Identifiers (MQTT 5.0).
	SubscriptionIDs []uint32
	// Delivered is true when the message was handed to the application, and
	// false for a QoS 2 duplicate suppressed because its packet identifier
	// was held (method B).
	Delivered bool
}

// ViolationKind names a protocol rule the server broke.
type ViolationKind string

// The violations a Session records.
const (
	// ZeroPacketID: a QoS 1 or 2 PUBLISH with packet identifier 0.
	ZeroPacketID ViolationKind = "zero-packet-id"
	// PacketIDReuse: a PUBLISH whose identifier is still in flight for a
	// different message (a QoS 1 PUBLISH whose PUBACK is withheld, or a held
	// QoS 2 identifier).
	PacketIDReuse ViolationKind = "packet-id-reuse"
	// UnknownPubrel: a PUBREL for an identifier the session does not hold.
	UnknownPubrel ViolationKind = "unknown-pubrel"
	// UnexpectedAck: a PUBACK, PUBREC, PUBCOMP, SUBACK or UNSUBACK for an
	// identifier not in flight, or of the wrong kind.
	UnexpectedAck ViolationKind = "unexpected-ack"
	// ReceiveMaximumExceeded: more unacknowledged QoS 1 and 2 PUBLISH
	// packets than the Receive Maximum the client sent.
	ReceiveMaximumExceeded ViolationKind = "receive-maximum-exceeded"
	// InvalidPacket: a well-formed packet that packet.Validate refuses, or
	// a packet type a server may not send.
	InvalidPacket ViolationKind = "invalid-packet"
	// SessionPresentAfterCleanStart: CONNACK Session Present 1 in answer to
	// a clean start.
	SessionPresentAfterCleanStart ViolationKind = "session-present-after-clean-start"
	// Malformed: bytes that are not a well-formed packet; the connection
	// ends.
	Malformed ViolationKind = "malformed"
)

// Violation is one protocol violation the client saw.
type Violation struct {
	Time time.Time
	// Conn is the connection number within the Session.
	Conn     int
	Kind     ViolationKind
	PacketID uint16
	// Detail says what happened, for logs.
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("conn %d: %s (packet id %d): %s", v.Conn, v.Kind, v.PacketID, v.Detail)
}

// SessionOptions configure a Session.
type SessionOptions struct {
	// OnMessage, if set, is called for every PUBLISH received, delivered or
	// suppressed, on the connection's reader goroutine before the
	// acknowledgement is sent. A slow callback slows the connection down,
	// as a slow application would.
	OnMessage func(Message)
	// OnViolation, if set, is called for every violation, on the reader
	// goroutine.
	OnViolation func(Violation)
	// NoLog keeps Messages empty (counts are still kept), for long runs
	// whose messages go to OnMessage instead.
	NoLog bool
}

// msgKey identifies a message's content, to tell a resend of the same
// message from a reuse of its packet identifier for another one.
type msgKey struct {
	topic string
	qos   byte
	sum   uint64
}

func keyOf(p *packet.Publish) msgKey {
	h := fnv.New64a()
	_, _ = h.Write(p.Payload)
	return msgKey{p.Topic, p.QoS, h.Sum64()}
}

// outMsg is an outbound QoS 1 or 2 message not yet complete.
type outMsg struct {
	pub *packet.Publish
	// order is when it was first sent, to resend in the same order.
	order uint64
	// released: PUBREC arrived and PUBREL was sent (QoS 2).
	released bool
}

// Session is the client side of an MQTT session; see the package
// documentation. It is safe for concurrent use, but at most one connection
// should use it at a time.
type Session struct {
	opts SessionOptions
	mu   struct {
		sync.Mutex
		conns int
		// held are the inbound QoS 2 identifiers awaiting PUBREL.
		held map[uint16]msgKey
		// completed maps an inbound QoS 2 identifier released by PUBREL to
		// the connection on which it was; a PUBREL for it on a later
		// connection is a resend after a lost PUBCOMP, not a violation.
		completed map[uint16]int
		out       map[uint16]*outMsg
		// busy are SUBSCRIBE and UNSUBSCRIBE identifiers in flight.
		busy      map[uint16]bool
		nextID    uint16
		nextOrder uint64
		log       []Message
		viol      []Violation
		delivered int
		dups      int
	}
}

// NewSession returns an empty Session.
func NewSession(opts SessionOptions) *Session {
	s := &Session{opts: opts}
	s.mu.held = map[uint16]msgKey{}
	s.mu.completed = map[uint16]int{}
	s.mu.out = map[uint16]*outMsg{}
	s.mu.busy = map[uint16]bool{}
	return s
}

// Messages returns a copy of the log of received PUBLISH packets.
func (s *Session) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.mu.log...)
}

// Violations returns a copy of the violations seen so far.
func (s *Session) Violations() []Violation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Violation(nil), s.mu.viol...)
}

// Counts returns how many messages were delivered to the application and
// how many QoS 2 duplicates were suppressed.
func (s *Session) Counts() (delivered, suppressed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.delivered, s.mu.dups
}

// Held returns the inbound QoS 2 packet identifiers awaiting PUBREL, in
// increasing order.
func (s *Session) Held() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]uint16, 0, len(s.mu.held))
	for id := range s.mu.held {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Pending returns how many outbound QoS 1 and 2 messages are not complete.
func (s *Session) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.out)
}

// startConn numbers a new connection and, when the server has no session,
// drops the client's session state.
func (s *Session) startConn(sessionPresent bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.conns++
	if !sessionPresent {
		clear(s.mu.held)
		clear(s.mu.completed)
		clear(s.mu.out)
	}
	clear(s.mu.busy)
	return s.mu.conns
}

func (s *Session) violation(v Violation) {
	s.mu.Lock()
	s.mu.viol = append(s.mu.viol, v)
	s.mu.Unlock()
	if s.opts.OnViolation != nil {
		s.opts.OnViolation(v)
	}
}

// record logs a received message and hands it to OnMessage.
func (s *Session) record(m Message) {
	s.mu.Lock()
	if m.Delivered {
		s.mu.delivered++
	} else {
		s.mu.dups++
	}
	if !s.opts.NoLog {
		s.mu.log = append(s.mu.log, m)
	}
	s.mu.Unlock()
	if s.opts.OnMessage != nil {
		s.opts.OnMessage(m)
	}
}

// receiveQoS2 applies method B to an inbound QoS 2 PUBLISH: it reports
// whether to deliver it, and whether its identifier was held for another
// message (a reuse).
func (s *Session) receiveQoS2(id uint16, k msgKey) (deliver, reuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.mu.held[id]; ok {
		return false, old != k
	}
	s.mu.held[id] = k
	delete(s.mu.completed, id)
	return true, false
}

// heldKey returns the message an inbound QoS 2 identifier is held for.
func (s *Session) heldKey(id uint16) (msgKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.mu.held[id]
	return k, ok
}

// numHeld is the number of held inbound QoS 2 identifiers.
func (s *Session) numHeld() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.held)
}

// release handles an inbound PUBREL on connection conn. known is false when
// the identifier was neither held nor released on an earlier connection.
func (s *Session) release(id uint16, conn int) (known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.held[id]; ok {
		delete(s.mu.held, id)
		s.mu.completed[id] = conn
		return true
	}
	// A PUBREL resent on a later connection because our PUBCOMP was lost
	// (or withheld) is normal [MQTT-4.4.0-1].
	if c, ok := s.mu.completed[id]; ok && c < conn {
		return true
	}
	return false
}

// allocLocked returns a free outbound packet identifier.
func (s *Session) allocLocked() (uint16, error) {
	for range 65535 {
		s.mu.nextID++
		if s.mu.nextID == 0 {
			s.mu.nextID = 1
		}
		id := s.mu.nextID
		if s.mu.out[id] == nil && !s.mu.busy[id] {
			return id, nil
		}
	}
	return 0, ErrNoPacketID
}

// addOut stores an outbound QoS 1 or 2 message and gives it an identifier.
func (s *Session) addOut(p *packet.Publish) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := s.allocLocked()
	if err != nil {
		return err
	}
	p.PacketID = id
	s.mu.nextOrder++
	s.mu.out[id] = &outMsg{pub: p, order: s.mu.nextOrder}
	return nil
}

// outState returns an outbound message's QoS and whether it was released;
// ok is false when the identifier is not in flight.
func (s *Session) outState(id uint16) (qos byte, released, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mu.out[id]
	if m == nil {
		return 0, false, false
	}
	return m.pub.QoS, m.released, true
}

func (s *Session) markReleased(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.mu.out[id]; m != nil {
		m.released = true
	}
}

func (s *Session) completeOut(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.out, id)
}

// pendingOut returns copies of the unfinished outbound messages in the
// order they were first sent.
func (s *Session) pendingOut() []outMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]outMsg, 0, len(s.mu.out))
	for _, m := range s.mu.out {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].order < out[j].order })
	return out
}

func (s *Session) reserve() (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := s.allocLocked()
	if err == nil {
		s.mu.busy[id] = true
	}
	return id, err
}

func (s *Session) unreserve(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.busy, id)
}

func clonePublish(p *packet.Publish) *packet.Publish {
	c := *p
	c.Payload = bytes.Clone(p.Payload)
	return &c
}
