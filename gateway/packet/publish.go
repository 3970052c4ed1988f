package packet

// Publish is the PUBLISH packet (section 3.3), which carries an application
// message in either direction.
type Publish struct {
	// Dup is the DUP flag: a redelivery [MQTT-3.3.1-1].
	Dup bool
	// QoS is the quality of service level, 0, 1 or 2.
	QoS byte
	// Retain is the RETAIN flag.
	Retain bool
	// Topic is the Topic Name. In MQTT 5.0 it may be empty when a Topic
	// Alias is given (section 3.3.2.3.4).
	Topic string
	// PacketID is the Packet Identifier, present only when QoS > 0.
	PacketID uint16
	// Properties are the PUBLISH properties (MQTT 5.0).
	Properties Properties
	// Payload is the application message. From the decoder it aliases
	// the packet bytes.
	Payload []byte
}

// Fixed header flag bits of PUBLISH (section 3.3.1).
const (
	pubRetain   = 0x01
	pubQoSShift = 1
	pubDup      = 0x08
)

// Type returns PUBLISH.
func (*Publish) Type() Type { return PUBLISH }

// Append appends the packet encoded for version v.
func (p *Publish) Append(dst []byte, v Version) ([]byte, error) {
	return appendPacket(dst, p, v)
}

// Size returns the encoded size for version v.
func (p *Publish) Size(v Version) (int, error) { return sizePacket(p, v) }

func (p *Publish) flags() byte {
	f := p.QoS << pubQoSShift
	if p.Dup {
		f |= pubDup
	}
	if p.Retain {
		f |= pubRetain
	}
	return f
}

// decodePublish decodes a PUBLISH; the fixed header has already refused
// QoS 3 [MQTT-3.3.1-4].
func decodePublish(d *decoder, flags byte) *Publish {
	p := &Publish{
		Dup:    flags&pubDup != 0,
		QoS:    flags >> pubQoSShift & 3,
		Retain: flags&pubRetain != 0,
	}
	p.Topic = d.str("topic name")
	if p.QoS > 0 {
		p.PacketID = d.u16("packet identifier")
	}
	if d.v == V5 {
		d.properties(&p.Properties, false)
	}
	p.Payload = d.rest()
	return p
}

func (p *Publish) bodyLen(s *sizer, v Version) int {
	if p.QoS > 2 {
		s.fail(PUBLISH, "QoS above 2")
	}
	if p.QoS == 0 && p.PacketID != 0 {
		s.fail(PUBLISH, "packet identifier with QoS 0")
	}
	noV5(s, PUBLISH, v, !p.Properties.Empty(), "properties")
	s.str(PUBLISH, "topic name", len(p.Topic))
	if p.QoS > 0 {
		s.n += 2
	}
	if v == V5 {
		s.n += propsSize(s, &p.Properties, PUBLISH, false)
	}
	s.n += len(p.Payload)
	return s.n
}

func (p *Publish) appendBody(dst []byte, v Version) []byte {
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == V5 {
		dst = appendProps(dst, &p.Properties, PUBLISH, false)
	}
	return append(dst, p.Payload...)
}
