package packet

// Subscribe is the SUBSCRIBE packet (section 3.8).
type Subscribe struct {
	// PacketID is the Packet Identifier.
	PacketID uint16
	// Properties are the SUBSCRIBE properties (MQTT 5.0).
	Properties Properties
	// Subscriptions are the topic filters and their options, in wire
	// order. The decoder accepts an empty list; Validate refuses it
	// [MQTT-3.8.3-3].
	Subscriptions []Subscription
}

// Subscription is one Topic Filter of a SUBSCRIBE with its Subscription
// Options (section 3.8.3.1). Before MQTT 5.0 only QoS is used.
type Subscription struct {
	// Filter is the Topic Filter.
	Filter string
	// QoS is the Maximum QoS.
	QoS byte
	// NoLocal asks the server not to send the client its own messages.
	NoLocal bool
	// RetainAsPublished keeps the RETAIN flag of forwarded messages.
	RetainAsPublished bool
	// RetainHandling is 0 (send retained messages), 1 (only for a new
	// subscription) or 2 (never).
	RetainHandling byte
}

// Subscription option bits (section 3.8.3.1).
const (
	subQoSMask         = 0x03
	subNoLocal         = 0x04
	subRetainAsPub     = 0x08
	subRetainHandShift = 4
)

// Suback is the SUBACK packet (section 3.9).
type Suback struct {
	// PacketID is the Packet Identifier of the SUBSCRIBE.
	PacketID uint16
	// Properties are the SUBACK properties (MQTT 5.0).
	Properties Properties
	// ReasonCodes has one code per subscription: GrantedQoS0..2 or a
	// failure (0x80 only before MQTT 5.0).
	ReasonCodes []ReasonCode
}

// Type returns SUBSCRIBE.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Type returns SUBACK.
func (*Suback) Type() Type { return SUBACK }

// Append appends the packet encoded for version v.
func (p *Subscribe) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Append appends the packet encoded for version v.
func (p *Suback) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Size returns the encoded size for version v.
func (p *Subscribe) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Suback) Size(v Version) (int, error) { return sizePacket(p, v) }

func (*Subscribe) flags() byte { return SUBSCRIBE.fixedFlags() }
func (*Suback) flags() byte    { return 0 }

// countStrings counts the length-prefixed strings in b, each followed by
// extra bytes, so that slices can be allocated at their final size. It
// stops early at a string that does not fit; the decoder reports that one.
func countStrings(b []byte, extra int) int {
	n := 0
	for len(b) >= 2 {
		l := 2 + (int(b[0])<<8 | int(b[1])) + extra
		if l > len(b) {
			break
		}
		b = b[l:]
		n++
	}
	return n
}

func decodeSubscribe(d *decoder) *Subscribe {
	p := &Subscribe{PacketID: d.u16("packet identifier")}
	if d.v == V5 {
		d.properties(&p.Properties, false)
	}
	if d.err != nil {
		return p
	}
	if n := countStrings(d.b[d.off:], 1); n > 0 {
		p.Subscriptions = make([]Subscription, 0, n)
	}
	for d.err == nil && d.remaining() > 0 {
		s := Subscription{Filter: d.str("topic filter")}
		o := d.u8("subscription options")
		if d.err != nil {
			break
		}
		s.QoS = o & subQoSMask
		if d.v == V5 {
			s.NoLocal = o&subNoLocal != 0
			s.RetainAsPublished = o&subRetainAsPub != 0
			s.RetainHandling = o >> subRetainHandShift & 3
			switch {
			case o&0xC0 != 0:
				d.fail(malformed(SUBSCRIBE, "MQTT-3.8.3-5", "reserved subscription option bits are set"))
			case s.QoS == 3:
				// Section 3.8.3.1: Maximum QoS 3 is a Protocol Error.
				d.fail(protocolError(SUBSCRIBE, "", "Maximum QoS 3"))
			case s.RetainHandling == 3:
				// Section 3.8.3.1: Retain Handling 3 is a Protocol Error.
				d.fail(protocolError(SUBSCRIBE, "", "Retain Handling 3"))
			}
		} else if o&^subQoSMask != 0 || s.QoS == 3 {
			// [MQTT-3.8.3-4] (3.1.1)
			d.fail(malformed(SUBSCRIBE, "MQTT-3.8.3-4", "reserved bits set or QoS 3 in requested QoS"))
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	return p
}

func (p *Subscribe) bodyLen(s *sizer, v Version) int {
	noV5(s, SUBSCRIBE, v, !p.Properties.Empty(), "properties")
	s.n = 2
	if v == V5 {
		s.n += propsSize(s, &p.Properties, SUBSCRIBE, false)
	}
	for _, sub := range p.Subscriptions {
		if sub.QoS > 2 || sub.RetainHandling > 2 {
			s.fail(SUBSCRIBE, "QoS or Retain Handling above 2")
		}
		noV5(s, SUBSCRIBE, v, sub.NoLocal || sub.RetainAsPublished || sub.RetainHandling != 0, "subscription options")
		s.str(SUBSCRIBE, "topic filter", len(sub.Filter))
		s.n++
	}
	return s.n
}

func (p *Subscribe) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Properties, SUBSCRIBE, false)
	}
	for _, sub := range p.Subscriptions {
		o := sub.QoS | sub.RetainHandling<<subRetainHandShift
		if sub.NoLocal {
			o |= subNoLocal
		}
		if sub.RetainAsPublished {
			o |= subRetainAsPub
		}
		dst = append(appendString(dst, sub.Filter), o)
	}
	return dst
}

func decodeSuback(d *decoder) *Suback {
	p := &Suback{PacketID: d.u16("packet identifier")}
	if d.v == V5 {
		d.properties(&p.Properties, false)
	}
	p.ReasonCodes = reasonCodes(d.rest())
	return p
}

// reasonCodes copies a SUBACK or UNSUBACK payload.
func reasonCodes(b []byte) []ReasonCode {
	if len(b) == 0 {
		return nil
	}
	rc := make([]ReasonCode, len(b))
	for i, c := range b {
		rc[i] = ReasonCode(c)
	}
	return rc
}

func (p *Suback) bodyLen(s *sizer, v Version) int {
	noV5(s, SUBACK, v, !p.Properties.Empty(), "properties")
	n := 2 + len(p.ReasonCodes)
	if v == V5 {
		n += propsSize(s, &p.Properties, SUBACK, false)
	}
	return n
}

func (p *Suback) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Properties, SUBACK, false)
	}
	for _, c := range p.ReasonCodes {
		dst = append(dst, byte(c))
	}
	return dst
}
