package packet

// Unsubscribe is the UNSUBSCRIBE packet (section 3.10).
type Unsubscribe struct {
	// PacketID is the Packet Identifier.
	PacketID uint16
	// Properties are the UNSUBSCRIBE properties (MQTT 5.0).
	Properties Properties
	// Filters are the Topic Filters, in wire order. The decoder accepts an
	// empty list; Validate refuses it [MQTT-3.10.3-2].
	Filters []string
}

// Unsuback is the UNSUBACK packet (section 3.11).
type Unsuback struct {
	// PacketID is the Packet Identifier of the UNSUBSCRIBE.
	PacketID uint16
	// Properties are the UNSUBACK properties (MQTT 5.0).
	Properties Properties
	// ReasonCodes has one code per topic filter (MQTT 5.0; before 5.0
	// UNSUBACK has no payload).
	ReasonCodes []ReasonCode
}

// Type returns UNSUBSCRIBE.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

// Type returns UNSUBACK.
func (*Unsuback) Type() Type { return UNSUBACK }

// Append appends the packet encoded for version v.
func (p *Unsubscribe) Append(dst []byte, v Version) ([]byte, error) {
	return appendPacket(dst, p, v)
}

// Append appends the packet encoded for version v.
func (p *Unsuback) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Size returns the encoded size for version v.
func (p *Unsubscribe) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Unsuback) Size(v Version) (int, error) { return sizePacket(p, v) }

func (*Unsubscribe) flags() byte { return UNSUBSCRIBE.fixedFlags() }
func (*Unsuback) flags() byte    { return 0 }

func decodeUnsubscribe(d *decoder) *Unsubscribe {
	p := &Unsubscribe{PacketID: d.u16("packet identifier")}
	if d.v == V5 {
		d.properties(&p.Properties, false)
	}
	if d.err != nil {
		return p
	}
	if n := countStrings(d.b[d.off:], 0); n > 0 {
		p.Filters = make([]string, 0, n)
	}
	for d.err == nil && d.remaining() > 0 {
		f := d.str("topic filter")
		if d.err == nil {
			p.Filters = append(p.Filters, f)
		}
	}
	return p
}

func (p *Unsubscribe) bodyLen(s *sizer, v Version) int {
	noV5(s, UNSUBSCRIBE, v, !p.Properties.Empty(), "properties")
	s.n = 2
	if v == V5 {
		s.n += propsSize(s, &p.Properties, UNSUBSCRIBE, false)
	}
	for _, f := range p.Filters {
		s.str(UNSUBSCRIBE, "topic filter", len(f))
	}
	return s.n
}

func (p *Unsubscribe) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Properties, UNSUBSCRIBE, false)
	}
	for _, f := range p.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

// decodeUnsuback decodes an UNSUBACK: exactly a packet identifier before
// MQTT 5.0 (3.1.1 section 3.11.1).
func decodeUnsuback(d *decoder) *Unsuback {
	p := &Unsuback{PacketID: d.u16("packet identifier")}
	if d.v == V5 {
		d.properties(&p.Properties, false)
		p.ReasonCodes = reasonCodes(d.rest())
	}
	d.end()
	return p
}

func (p *Unsuback) bodyLen(s *sizer, v Version) int {
	noV5(s, UNSUBACK, v, !p.Properties.Empty() || len(p.ReasonCodes) > 0, "properties or reason codes")
	n := 2
	if v == V5 {
		n += propsSize(s, &p.Properties, UNSUBACK, false) + len(p.ReasonCodes)
	}
	return n
}

func (p *Unsuback) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Properties, UNSUBACK, false)
		for _, c := range p.ReasonCodes {
			dst = append(dst, byte(c))
		}
	}
	return dst
}
