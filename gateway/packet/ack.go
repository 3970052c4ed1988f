package packet

// Puback is the PUBACK packet (section 3.4), the answer to a QoS 1 PUBLISH.
type Puback struct {
	// PacketID is the Packet Identifier of the PUBLISH.
	PacketID uint16
	// ReasonCode is the PUBACK Reason Code (MQTT 5.0).
	ReasonCode ReasonCode
	// Properties are the PUBACK properties (MQTT 5.0).
	Properties Properties
}

// Pubrec is the PUBREC packet (section 3.5), the first answer to a QoS 2
// PUBLISH.
type Pubrec struct {
	// PacketID is the Packet Identifier of the PUBLISH.
	PacketID uint16
	// ReasonCode is the PUBREC Reason Code (MQTT 5.0).
	ReasonCode ReasonCode
	// Properties are the PUBREC properties (MQTT 5.0).
	Properties Properties
}

// Pubrel is the PUBREL packet (section 3.6), the answer to PUBREC.
type Pubrel struct {
	// PacketID is the Packet Identifier of the PUBLISH.
	PacketID uint16
	// ReasonCode is the PUBREL Reason Code (MQTT 5.0).
	ReasonCode ReasonCode
	// Properties are the PUBREL properties (MQTT 5.0).
	Properties Properties
}

// Pubcomp is the PUBCOMP packet (section 3.7), the answer to PUBREL.
type Pubcomp struct {
	// PacketID is the Packet Identifier of the PUBLISH.
	PacketID uint16
	// ReasonCode is the PUBCOMP Reason Code (MQTT 5.0).
	ReasonCode ReasonCode
	// Properties are the PUBCOMP properties (MQTT 5.0).
	Properties Properties
}

// ack is the shared layout of the four acknowledgements; *Puback, *Pubrec,
// *Pubrel and *Pubcomp convert to *ack.
type ack struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Type returns PUBACK.
func (*Puback) Type() Type { return PUBACK }

// Type returns PUBREC.
func (*Pubrec) Type() Type { return PUBREC }

// Type returns PUBREL.
func (*Pubrel) Type() Type { return PUBREL }

// Type returns PUBCOMP.
func (*Pubcomp) Type() Type { return PUBCOMP }

// Append appends the packet encoded for version v. In MQTT 5.0 the reason
// code and property length are left out when they are Success and empty
// (section 3.4.2.1).
func (p *Puback) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Append appends the packet encoded for version v.
func (p *Pubrec) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Append appends the packet encoded for version v.
func (p *Pubrel) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Append appends the packet encoded for version v.
func (p *Pubcomp) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Size returns the encoded size for version v.
func (p *Puback) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Pubrec) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Pubrel) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Pubcomp) Size(v Version) (int, error) { return sizePacket(p, v) }

func (*Puback) flags() byte  { return 0 }
func (*Pubrec) flags() byte  { return 0 }
func (*Pubrel) flags() byte  { return PUBREL.fixedFlags() }
func (*Pubcomp) flags() byte { return 0 }

func (p *Puback) bodyLen(s *sizer, v Version) int  { return (*ack)(p).size(s, PUBACK, v) }
func (p *Pubrec) bodyLen(s *sizer, v Version) int  { return (*ack)(p).size(s, PUBREC, v) }
func (p *Pubrel) bodyLen(s *sizer, v Version) int  { return (*ack)(p).size(s, PUBREL, v) }
func (p *Pubcomp) bodyLen(s *sizer, v Version) int { return (*ack)(p).size(s, PUBCOMP, v) }

func (p *Puback) appendBody(dst []byte, v Version) []byte {
	return (*ack)(p).appendTo(dst, PUBACK, v)
}

func (p *Pubrec) appendBody(dst []byte, v Version) []byte {
	return (*ack)(p).appendTo(dst, PUBREC, v)
}

func (p *Pubrel) appendBody(dst []byte, v Version) []byte {
	return (*ack)(p).appendTo(dst, PUBREL, v)
}

func (p *Pubcomp) appendBody(dst []byte, v Version) []byte {
	return (*ack)(p).appendTo(dst, PUBCOMP, v)
}

// decodeAck decodes any of the four acknowledgements. Before MQTT 5.0 the
// remaining length is exactly 2; in MQTT 5.0 a remaining length of 2 means
// Success with no properties and 3 a reason code with no properties
// (section 3.4.2.1).
func decodeAck(d *decoder) *ack {
	a := &ack{PacketID: d.u16("packet identifier")}
	if d.v == V5 {
		d.reasonAndProperties(&a.ReasonCode, &a.Properties)
	}
	d.end()
	return a
}

// reasonAndProperties reads the optional reason code and properties that
// end the acknowledgements, DISCONNECT and AUTH in MQTT 5.0.
func (d *decoder) reasonAndProperties(rc *ReasonCode, p *Properties) {
	if d.err != nil || d.remaining() == 0 {
		return
	}
	*rc = ReasonCode(d.u8("reason code"))
	if d.remaining() == 0 {
		return
	}
	d.properties(p, false)
}

func (a *ack) size(s *sizer, t Type, v Version) int {
	noV5(s, t, v, a.ReasonCode != Success || !a.Properties.Empty(), "reason code or properties")
	return 2 + reasonAndPropertiesSize(s, t, v, a.ReasonCode, &a.Properties)
}

func (a *ack) appendTo(dst []byte, t Type, v Version) []byte {
	dst = appendU16(dst, a.PacketID)
	return appendReasonAndProperties(dst, t, v, a.ReasonCode, &a.Properties)
}

// reasonAndPropertiesSize is the size of the shortest form that carries rc
// and p: nothing, the reason code alone, or both.
func reasonAndPropertiesSize(s *sizer, t Type, v Version, rc ReasonCode, p *Properties) int {
	switch {
	case v != V5 || (rc == Success && p.Empty()):
		return 0
	case p.Empty():
		return 1
	}
	return 1 + propsSize(s, p, t, false)
}

func appendReasonAndProperties(dst []byte, t Type, v Version, rc ReasonCode, p *Properties) []byte {
	switch {
	case v != V5 || (rc == Success && p.Empty()):
		return dst
	case p.Empty():
		return append(dst, byte(rc))
	}
	return appendProps(append(dst, byte(rc)), p, t, false)
}
