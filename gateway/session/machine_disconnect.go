package session

import "github.com/stratamq/strata/gateway/packet"

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
	m.end(ReasonClientDisconnect, will)
}
