package session

import "github.com/stratamq/strata/gateway/packet"

// publish handles a PUBLISH that passed packet.Validate.
func (m *Machine) publish(p *packet.Publish) {
	v5 := m.version == packet.V5
	if v5 && p.Properties.Present.Has(packet.PropTopicAlias) {
		alias := p.Properties.TopicAlias // 1..TopicAliasMaximum: Validate checked
		if p.Topic == "" {
			topic, ok := m.aliases[alias]
			if !ok {
				m.abort(ReasonProtocolError, packet.ProtocolError) // section 3.3.2.3.4: unknown alias
				return
			}
			p.Topic = topic
		} else {
			if m.aliases == nil {
				m.aliases = make(map[uint16]string)
			}
			m.aliases[alias] = p.Topic
		}
		// The alias is this connection's; the message carries the topic.
		p.Properties.Present.Remove(packet.PropTopicAlias)
		p.Properties.TopicAlias = 0
	}
	if p.Retain && v5 && !m.cfg.RetainAvailable {
		m.abort(ReasonNotSupported, packet.RetainNotSupported) // [MQTT-3.3.1-11] (v5 section 3.2.2.3.5)
		return
	}
	if p.QoS > m.cfg.MaxQoS {
		m.abort(ReasonNotSupported, packet.QoSNotSupported) // [MQTT-3.2.2-11]
		return
	}
	if m.authorize != nil && !m.authorize(AccessPublish, p.Topic) {
		m.out = append(m.out, Denied{Access: AccessPublish, Topic: p.Topic})
		switch {
		case p.QoS == 0:
			// Dropped: QoS 0 has no answer.
		case !v5:
			// 3.1.1 has no negative acknowledgement: acknowledge
			// normally or close [MQTT-3.3.5-2] (3.1.1).
			m.abort(ReasonProtocolError, packet.NotAuthorized)
		default:
			m.nack(p, packet.NotAuthorized)
		}
		return
	}
	if p.QoS > 0 {
		// Not stored yet, so never acknowledged as a success (STYLE.md
		// rule 6).
		if !v5 {
			m.abort(ReasonNotSupported, packet.ImplementationSpecificError)
			return
		}
		m.nack(p, packet.ImplementationSpecificError)
		return
	}
	m.out = append(m.out, Publish{Packet: p})
}

// nack answers a QoS 1 or 2 PUBLISH with a failure reason code (MQTT 5),
// which ends its exchange (section 4.3.3: a PUBREC of 0x80 or more ends a
// QoS 2 exchange).
func (m *Machine) nack(p *packet.Publish, code packet.ReasonCode) {
	if p.QoS == 1 {
		m.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: code})
		return
	}
	m.send(&packet.Pubrec{PacketID: p.PacketID, ReasonCode: code})
}
