package mqttrec

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// readLoop reads and handles packets until the connection ends.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	defer close(c.done)
	for {
		if !c.waitResumed() {
			c.end(ErrClosed)
			return
		}
		p, err := packet.ReadPacket(c.br, c.v, c.opts.MaxPacketSize)
		if err != nil {
			c.readFailed(err)
			return
		}
		if err := c.handle(p); err != nil {
			c.end(err)
			return
		}
	}
}

func (c *Conn) readFailed(err error) {
	select {
	case <-c.closing:
		c.end(ErrClosed)
		return
	default:
	}
	if _, ok := packet.CodeOf(err); ok {
		// Malformed, or over our maximum size: the client closes, in MQTT
		// 5.0 with a DISCONNECT carrying the code [MQTT-4.13.1-1] (v5).
		code, _ := packet.CodeOf(err)
		c.violation(Malformed, 0, "%v", err)
		if c.v == packet.V5 && c.send(&packet.Disconnect{ReasonCode: code}) == nil {
			_ = c.flush(disconnectFlushTimeout)
		}
		c.end(fmt.Errorf("mqttrec: from server: %w", err))
		return
	}
	if errors.Is(err, io.EOF) {
		err = io.EOF
	}
	c.end(fmt.Errorf("%w: %w", ErrConnectionLost, err))
}

// waitResumed blocks while the connection is paused; false means it closed.
func (c *Conn) waitResumed() bool {
	c.mu.Lock()
	ch := c.mu.resume
	c.mu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-c.closing:
		return false
	}
}

// handle processes one packet from the server. An error ends the
// connection.
func (c *Conn) handle(p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *packet.Pubrel:
		return c.handlePubrel(p)
	case *packet.Puback:
		c.handleOutboundAck(p.PacketID, p)
	case *packet.Pubrec:
		return c.handlePubrec(p)
	case *packet.Pubcomp:
		c.handleOutboundAck(p.PacketID, p)
	case *packet.Suback:
		c.notify(p.PacketID, p)
	case *packet.Unsuback:
		c.notify(p.PacketID, p)
	case *packet.Pingresp:
		c.mu.Lock()
		pings := c.mu.pings
		c.mu.pings = nil
		c.mu.Unlock()
		for _, ch := range pings {
			close(ch)
		}
	case *packet.Disconnect:
		return &ServerDisconnectError{Code: p.ReasonCode}
	default:
		c.violation(InvalidPacket, 0, "a server may not send %v", p.Type())
	}
	return nil
}

func (c *Conn) handlePublish(p *packet.Publish) error {
	now := time.Now()
	if err := packet.Validate(p, c.v, packet.ValidateOptions{FromServer: true}); err != nil && !(p.QoS > 0 && p.PacketID == 0) {
		c.violation(InvalidPacket, p.PacketID, "PUBLISH on %q: %v", p.Topic, err)
	}
	m := Message{Time: now, Conn: c.num, Topic: p.Topic, Payload: slices.Clone(p.Payload), QoS: p.QoS,
		Dup: p.Dup, Retain: p.Retain, PacketID: p.PacketID, Delivered: true,
		SubscriptionIDs: slices.Clone(p.Properties.SubscriptionIdentifiers)}
	if p.QoS == 0 {
		c.s.record(m)
		return nil
	}
	if p.PacketID == 0 {
		// [MQTT-2.2.1-3] (v5), [MQTT-2.3.1-1] (3.1.1). The application
		// gets it, but there is no identifier to acknowledge.
		c.violation(ZeroPacketID, 0, "QoS %d PUBLISH on %q without packet identifier", p.QoS, p.Topic)
		c.s.record(m)
		return nil
	}
	k := keyOf(p)
	fresh := c.checkInUse(p, k)
	if fresh {
		c.checkReceiveMaximum(p.PacketID)
	}
	if p.QoS == 1 {
		c.s.record(m)
		return c.ack(&packet.Puback{PacketID: p.PacketID}, k)
	}
	deliver, reuse := c.s.receiveQoS2(p.PacketID, k)
	if reuse {
		c.violation(PacketIDReuse, p.PacketID, "QoS 2 PUBLISH on %q reuses an identifier held for another message (suppressed)", p.Topic)
	}
	m.Delivered = deliver
	c.s.record(m)
	return c.ack(&packet.Pubrec{PacketID: p.PacketID}, k)
}

// checkInUse records a reuse when a PUBLISH carries an identifier still in
// flight on the client's side for a different message. It reports whether
// the identifier was free (a new message for the Receive Maximum).
func (c *Conn) checkInUse(p *packet.Publish, k msgKey) (fresh bool) {
	c.mu.Lock()
	q1, inQ1 := c.mu.unacked[p.PacketID]
	c.mu.Unlock()
	_, inQ2 := c.s.heldKey(p.PacketID)
	switch {
	case inQ1 && q1 != k:
		c.violation(PacketIDReuse, p.PacketID, "QoS %d PUBLISH on %q reuses the identifier of an unacknowledged QoS 1 message", p.QoS, p.Topic)
	case inQ2 && p.QoS == 1:
		c.violation(PacketIDReuse, p.PacketID, "QoS 1 PUBLISH on %q reuses a held QoS 2 identifier", p.Topic)
	}
	if inQ1 && p.QoS == 2 {
		// The QoS 1 flow can no longer complete.
		c.mu.Lock()
		delete(c.mu.unacked, p.PacketID)
		c.mu.Unlock()
	}
	return !inQ1 && !inQ2
}

// checkReceiveMaximum records a violation when a new QoS 1 or 2 PUBLISH
// makes more unacknowledged ones than the client allowed [MQTT-3.3.4-7]
// (v5). Unacknowledged are QoS 1 messages whose PUBACK is withheld, QoS 2
// identifiers awaiting PUBREL and those whose PUBCOMP is withheld; this one
// counts too. A PUBACK or PUBCOMP the client sent may not have reached the
// server yet, so the count errs low: a violation reported is certain.
func (c *Conn) checkReceiveMaximum(id uint16) {
	if c.v != packet.V5 || c.opts.ReceiveMaximum == 0 {
		return
	}
	c.mu.Lock()
	n := len(c.mu.unacked)
	for _, p := range c.mu.withheld {
		if p.Type() == packet.PUBCOMP {
			n++
		}
	}
	c.mu.Unlock()
	n += c.s.numHeld() + 1
	if n > int(c.opts.ReceiveMaximum) {
		c.violation(ReceiveMaximumExceeded, id, "%d unacknowledged QoS 1/2 PUBLISH packets, Receive Maximum %d", n, c.opts.ReceiveMaximum)
	}
}

func (c *Conn) handlePubrel(p *packet.Pubrel) error {
	if c.s.release(p.PacketID, c.num) {
		return c.ack(&packet.Pubcomp{PacketID: p.PacketID}, msgKey{})
	}
	c.violation(UnknownPubrel, p.PacketID, "PUBREL for an identifier the session does not hold")
	comp := &packet.Pubcomp{PacketID: p.PacketID}
	if c.v == packet.V5 {
		comp.ReasonCode = packet.PacketIdentifierNotFound
	}
	// The receiver must answer a PUBREL with PUBCOMP even for an identifier
	// it does not know (3.1.1 section 4.3.3, MQTT 5.0 section 3.7.2.1).
	return c.ack(comp, msgKey{})
}

func (c *Conn) handlePubrec(p *packet.Pubrec) error {
	qos, released, ok := c.s.outState(p.PacketID)
	switch {
	case !ok:
		c.violation(UnexpectedAck, p.PacketID, "PUBREC for an identifier not in flight")
		if c.v == packet.V5 {
			return c.send(&packet.Pubrel{PacketID: p.PacketID, ReasonCode: packet.PacketIdentifierNotFound})
		}
		return nil
	case qos != 2:
		c.violation(UnexpectedAck, p.PacketID, "PUBREC for a QoS %d message", qos)
		return nil
	case p.ReasonCode.Failure():
		// The exchange ends here (MQTT 5.0 section 4.3.3).
		c.s.completeOut(p.PacketID)
		c.notify(p.PacketID, p)
		return nil
	}
	if !released {
		c.s.markReleased(p.PacketID)
	}
	return c.send(&packet.Pubrel{PacketID: p.PacketID})
}

// handleOutboundAck completes an outbound message on PUBACK (QoS 1) or
// PUBCOMP (QoS 2, after PUBREL).
func (c *Conn) handleOutboundAck(id uint16, p packet.Packet) {
	qos, released, ok := c.s.outState(id)
	want := packet.PUBACK
	if qos == 2 {
		want = packet.PUBCOMP
	}
	if !ok || p.Type() != want || (qos == 2 && !released) {
		c.violation(UnexpectedAck, id, "%v for an identifier not awaiting it", p.Type())
		return
	}
	c.s.completeOut(id)
	c.notify(id, p)
}

// notify hands p to whoever waits on identifier id.
func (c *Conn) notify(id uint16, p packet.Packet) {
	c.mu.Lock()
	ch := c.mu.waiters[id]
	delete(c.mu.waiters, id)
	c.mu.Unlock()
	if ch == nil {
		switch p.Type() {
		case packet.SUBACK, packet.UNSUBACK:
			c.violation(UnexpectedAck, id, "%v for an identifier not in flight", p.Type())
		}
		return
	}
	ch <- p
}

// ack sends an acknowledgement of an inbound packet unless it is to be
// withheld. k identifies the QoS 1 message of a PUBACK.
func (c *Conn) ack(p packet.Packet, k msgKey) error {
	t := p.Type()
	c.mu.Lock()
	if c.mu.withhold[t] > 0 {
		c.mu.withhold[t]--
		c.mu.withheld = append(c.mu.withheld, p)
		if pa, ok := p.(*packet.Puback); ok {
			c.mu.unacked[pa.PacketID] = k
		}
		c.mu.Unlock()
		return nil
	}
	if pa, ok := p.(*packet.Puback); ok {
		delete(c.mu.unacked, pa.PacketID)
	}
	c.mu.Unlock()
	return c.send(p)
}
