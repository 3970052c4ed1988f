package session

import (
	"strings"

	"github.com/stratamq/strata/gateway/packet"
)

// maxSubscriptions bounds the subscriptions one connection holds; beyond it
// a filter is refused with Quota exceeded (0x80 in 3.1.1).
const maxSubscriptions = 1000

// subscribe answers a SUBSCRIBE that passed packet.Validate: one code per
// filter, the others granted when some are refused.
func (m *Machine) subscribe(p *packet.Subscribe) {
	if m.version == packet.V5 && len(p.Properties.SubscriptionIdentifiers) > 0 && !m.cfg.SubscriptionIDAvailable {
		m.abort(ReasonNotSupported, packet.SubscriptionIdentifiersNotSupported) // section 3.2.2.3.12
		return
	}
	codes := make([]packet.ReasonCode, len(p.Subscriptions))
	for i, s := range p.Subscriptions {
		codes[i] = m.subscribeOne(s)
	}
	m.send(&packet.Suback{PacketID: p.PacketID, ReasonCodes: codes})
}

func (m *Machine) subscribeOne(s packet.Subscription) packet.ReasonCode {
	v5 := m.version == packet.V5
	fail := func(code packet.ReasonCode) packet.ReasonCode {
		if v5 {
			return code
		}
		return packet.UnspecifiedError // 3.1.1 has only 0x80 [MQTT-3.9.3-2] (3.1.1)
	}
	if packet.ValidateTopicFilter(s.Filter, m.version) != nil {
		return fail(packet.TopicFilterInvalid)
	}
	filter := s.Filter
	if v5 {
		if _, rest, shared := packet.SplitShared(s.Filter); shared {
			if !m.cfg.SharedAvailable {
				return fail(packet.SharedSubscriptionsNotSupported)
			}
			filter = rest
		}
	}
	if !m.cfg.WildcardAvailable && strings.ContainsAny(filter, "+#") {
		return fail(packet.WildcardSubscriptionsNotSupported)
	}
	if m.authorize != nil && !m.authorize(AccessSubscribe, s.Filter) {
		m.out = append(m.out, Denied{Access: AccessSubscribe, Topic: s.Filter})
		return fail(packet.NotAuthorized)
	}
	if _, ok := m.subs[s.Filter]; !ok && len(m.subs) >= maxSubscriptions {
		return fail(packet.QuotaExceeded)
	}
	s.QoS = min(s.QoS, m.cfg.MaxQoS)
	if m.subs == nil {
		m.subs = make(map[string]packet.Subscription)
	}
	m.subs[s.Filter] = s
	return packet.ReasonCode(s.QoS) // Granted QoS 0, 1 or 2
}

// unsubscribe answers an UNSUBSCRIBE; MQTT 5 gets a code per filter.
func (m *Machine) unsubscribe(p *packet.Unsubscribe) {
	ack := &packet.Unsuback{PacketID: p.PacketID}
	for _, f := range p.Filters {
		code := packet.Success
		switch _, ok := m.subs[f]; {
		case packet.ValidateTopicFilter(f, m.version) != nil:
			code = packet.TopicFilterInvalid
		case ok:
			delete(m.subs, f)
		default:
			code = packet.NoSubscriptionExisted
		}
		if m.version == packet.V5 {
			ack.ReasonCodes = append(ack.ReasonCodes, code)
		}
	}
	m.send(ack)
}

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
