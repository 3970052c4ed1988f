package server

import (
	"time"

	"github.com/stratamq/strata/gateway/session"
)

// The inbound budget (mqtt.max_inbound_bytes): MQTT 3.1.1 has no Receive
// Maximum, and QoS 0 none at all, so while dsd is slow a client could make
// the gateway queue every PUBLISH it sends. Instead, while the machine holds
// the budget or more of PUBLISHes accepted and not yet stored
// (Machine.InboundBytes), the read loop stops reading the socket: TCP's own
// flow control then slows the client down. A connection holds at most the
// budget plus one packet.

// waitInbound blocks the read loop while the connection is at its budget,
// until a Store frees room or the connection ends. It returns how long it
// waited.
func (c *conn) waitInbound() time.Duration {
	limit := c.s.inboundLimit
	if limit <= 0 {
		return 0
	}
	var start time.Time
	for {
		c.mu.Lock()
		n := c.mu.m.InboundBytes()
		c.mu.inboundPeak = max(c.mu.inboundPeak, n)
		over := n >= limit && !c.mu.closing && !c.mu.m.Closed()
		if over && c.inboundFreed == nil {
			c.inboundFreed = make(chan struct{}, 1)
		}
		c.mu.inboundWait = over
		freed := c.inboundFreed
		c.mu.Unlock()
		if !over {
			if start.IsZero() {
				return 0
			}
			return time.Since(start)
		}
		if start.IsZero() {
			start = time.Now()
		}
		select {
		case <-freed:
		case <-c.aborted:
			return time.Since(start)
		}
	}
}

// inboundFreedLocked wakes the read loop if it waits for room that the
// machine call just made (withMachineDo calls it).
func (c *conn) inboundFreedLocked() {
	if !c.mu.inboundWait || (c.mu.m.InboundBytes() >= c.s.inboundLimit && !c.mu.m.Closed()) {
		return
	}
	select {
	case c.inboundFreed <- struct{}{}:
	default:
	}
}

// overBudgetLocked reports whether the machine holds the inbound budget,
// so that the read loop waits (waitInbound) before reading on.
func (c *conn) overBudgetLocked() bool {
	return c.s.inboundLimit > 0 && c.mu.m.InboundBytes() >= c.s.inboundLimit
}

// idleDeadlineLocked is the machine's deadline moved by the time the read
// loop waited for the budget since the machine set it: the keep-alive is
// suspended while the gateway does not read (the client's silence is not
// its own). A new deadline from the machine starts without a shift.
func (c *conn) idleDeadlineLocked(m *session.Machine) (time.Time, bool) {
	d, ok := m.Deadline()
	if !d.Equal(c.rd.machine) {
		c.rd.machine, c.rd.extra = d, 0
	}
	if !ok {
		return d, false
	}
	return d.Add(c.rd.extra), true
}
