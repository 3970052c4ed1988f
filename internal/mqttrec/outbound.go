package mqttrec

import (
	"context"
	"fmt"

	"github.com/stratamq/strata/gateway/packet"
)

// Publish sends an application message and, for QoS 1 and 2, waits for the
// exchange to complete: PUBACK, or PUBREC, PUBREL and PUBCOMP. It returns
// the reason code that ended it, with an error matching ErrRefused when that
// is a failure (the message is then done with). The packet identifier is
// chosen here and p is not modified.
//
// If the connection ends first, or ctx is done, the error matches
// ErrConnectionLost (or is ctx's) and a QoS 1 or 2 message stays in the
// Session: its outcome is unknown until Resend on a later connection.
func (c *Conn) Publish(ctx context.Context, p *packet.Publish) (packet.ReasonCode, error) {
	pub := clonePublish(p)
	pub.Dup = false
	if pub.QoS == 0 {
		pub.PacketID = 0
		return packet.Success, c.send(pub)
	}
	if err := c.s.addOut(pub); err != nil {
		return 0, err
	}
	ch := c.wait(pub.PacketID)
	if err := c.send(pub); err != nil {
		c.unwait(pub.PacketID)
		return 0, err
	}
	return c.await(ctx, pub.PacketID, ch)
}

// Resend sends again, in their original order, the outbound messages the
// Session holds from earlier connections, as a client must after
// reconnecting to a session that is present [MQTT-4.4.0-1]: PUBLISH with DUP
// set [MQTT-3.3.1-1], or PUBREL for a QoS 2 message whose PUBREC arrived. It
// waits for every exchange and returns how many completed successfully and
// the first error.
func (c *Conn) Resend(ctx context.Context) (int, error) {
	pending := c.s.pendingOut()
	chans := make([]chan packet.Packet, len(pending))
	for i, m := range pending {
		id := m.pub.PacketID
		chans[i] = c.wait(id)
		var p packet.Packet = &packet.Pubrel{PacketID: id}
		if !m.released {
			dup := *m.pub
			dup.Dup = true
			p = &dup
		}
		if err := c.send(p); err != nil {
			for _, m := range pending[i:] {
				c.unwait(m.pub.PacketID)
			}
			return 0, err
		}
	}
	ok := 0
	var first error
	for i, m := range pending {
		if _, err := c.await(ctx, m.pub.PacketID, chans[i]); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ok++
	}
	return ok, first
}

// Subscribe sends SUBSCRIBE and returns the SUBACK reason codes, one per
// subscription. subID is the Subscription Identifier (MQTT 5.0; 0: none).
// The MQTT 5.0 options of each packet.Subscription (No Local, Retain As
// Published, Retain Handling) are sent as given.
func (c *Conn) Subscribe(ctx context.Context, subID uint32, subs ...packet.Subscription) ([]packet.ReasonCode, error) {
	sp := &packet.Subscribe{Subscriptions: subs}
	if subID != 0 {
		sp.Properties.SubscriptionIdentifiers = []uint32{subID}
	}
	p, err := c.request(ctx, func(id uint16) packet.Packet { sp.PacketID = id; return sp })
	if err != nil {
		return nil, err
	}
	ack, ok := p.(*packet.Suback)
	if !ok {
		return nil, fmt.Errorf("mqttrec: %v in answer to SUBSCRIBE", p.Type())
	}
	return ack.ReasonCodes, nil
}

// Unsubscribe sends UNSUBSCRIBE and returns the UNSUBACK reason codes (MQTT
// 5.0; nil before, where UNSUBACK has none).
func (c *Conn) Unsubscribe(ctx context.Context, filters ...string) ([]packet.ReasonCode, error) {
	up := &packet.Unsubscribe{Filters: filters}
	p, err := c.request(ctx, func(id uint16) packet.Packet { up.PacketID = id; return up })
	if err != nil {
		return nil, err
	}
	ack, ok := p.(*packet.Unsuback)
	if !ok {
		return nil, fmt.Errorf("mqttrec: %v in answer to UNSUBSCRIBE", p.Type())
	}
	return ack.ReasonCodes, nil
}

// Ping sends PINGREQ and waits for PINGRESP.
func (c *Conn) Ping(ctx context.Context) error {
	ch := make(chan struct{})
	c.mu.Lock()
	c.mu.pings = append(c.mu.pings, ch)
	c.mu.Unlock()
	if err := c.send(&packet.Pingreq{}); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-c.done:
		return ErrConnectionLost
	case <-ctx.Done():
		return ctx.Err()
	}
}

// request sends a SUBSCRIBE or UNSUBSCRIBE built with a fresh identifier and
// returns the answer.
func (c *Conn) request(ctx context.Context, build func(id uint16) packet.Packet) (packet.Packet, error) {
	id, err := c.s.reserve()
	if err != nil {
		return nil, err
	}
	defer c.s.unreserve(id)
	ch := c.wait(id)
	if err := c.send(build(id)); err != nil {
		c.unwait(id)
		return nil, err
	}
	select {
	case p := <-ch:
		return p, nil
	case <-c.done:
		select {
		case p := <-ch:
			return p, nil
		default:
		}
		return nil, ErrConnectionLost
	case <-ctx.Done():
		c.unwait(id)
		return nil, ctx.Err()
	}
}

func (c *Conn) wait(id uint16) chan packet.Packet {
	ch := make(chan packet.Packet, 1)
	c.mu.Lock()
	c.mu.waiters[id] = ch
	c.mu.Unlock()
	return ch
}

func (c *Conn) unwait(id uint16) {
	c.mu.Lock()
	delete(c.mu.waiters, id)
	c.mu.Unlock()
}

// await waits for the packet that ends an outbound exchange.
func (c *Conn) await(ctx context.Context, id uint16, ch chan packet.Packet) (packet.ReasonCode, error) {
	select {
	case p := <-ch:
		return result(p)
	case <-c.done:
		// The reader may have handed over the answer just before ending.
		select {
		case p := <-ch:
			return result(p)
		default:
		}
		c.unwait(id)
		return 0, ErrConnectionLost
	case <-ctx.Done():
		c.unwait(id)
		return 0, ctx.Err()
	}
}

// result is the reason code of the packet that ended an exchange.
func result(p packet.Packet) (packet.ReasonCode, error) {
	var rc packet.ReasonCode
	switch p := p.(type) {
	case *packet.Puback:
		rc = p.ReasonCode
	case *packet.Pubrec:
		rc = p.ReasonCode
	case *packet.Pubcomp:
		rc = p.ReasonCode
	}
	if rc.Failure() {
		return rc, fmt.Errorf("%w: %v %#02x (%v)", ErrRefused, p.Type(), byte(rc), rc)
	}
	return rc, nil
}
