package session

import (
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// clientDisconnect handles the client's DISCONNECT: reason 0x00 discards the
// will, any other publishes it; MQTT 5 may change the session expiry, but
// not from 0 [MQTT-3.14.2-2].
func (m *Machine) clientDisconnect(p *packet.Disconnect) {
	will := false
	if m.version == packet.V5 {
		if p.Properties.Present.Has(packet.PropSessionExpiryInterval) {
			e := p.Properties.SessionExpiryInterval
			if m.connectExpiryZero && e != 0 {
				m.abort(ReasonProtocolError, packet.ProtocolError)
				return
			}
			if m.cfg.MaxSessionExpiry > 0 && e > m.cfg.MaxSessionExpiry {
				e = m.cfg.MaxSessionExpiry
			}
			m.expiry = e
		}
		will = p.ReasonCode != packet.NormalDisconnection
	}
	if len(m.in.storing) > 0 || len(m.in.queue) > 0 {
		// Messages published before the DISCONNECT are stored first (QoS 0
		// included, as a client expects of a clean close); the connection
		// reads nothing more and ends when the last Store is done.
		m.drain = &drainEnd{will: will}
		m.deadline = time.Time{}
		return
	}
	m.end(ReasonClientDisconnect, will)
}

// drainEnd is a client DISCONNECT waiting for its connection's last Stores.
type drainEnd struct{ will bool }

// Draining reports whether the client disconnected and the machine is
// storing what it published before: the driver reads no more packets.
func (m *Machine) Draining() bool { return m.drain != nil && m.state != stateClosed }

// drained ends a draining connection once nothing is left to store.
func (m *Machine) drained() {
	if m.drain != nil && m.state == stateConnected && len(m.in.storing) == 0 && len(m.in.queue) == 0 {
		m.end(ReasonClientDisconnect, m.drain.will)
	}
}
