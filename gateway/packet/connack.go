package packet

// Connack is the CONNACK packet (section 3.2), the server's answer to
// CONNECT.
type Connack struct {
	// SessionPresent is the Session Present flag.
	SessionPresent bool
	// ReasonCode is the Connect Reason Code in MQTT 5.0. Before 5.0 the
	// same byte is the Connect Return Code (ConnectAccepted ...
	// ConnectRefusedNotAuthorized); see V3ConnectReturnCode.
	ReasonCode ReasonCode
	// Properties are the CONNACK properties (MQTT 5.0).
	Properties Properties
}

// Type returns CONNACK.
func (*Connack) Type() Type { return CONNACK }

// Append appends the packet encoded for version v.
func (c *Connack) Append(dst []byte, v Version) ([]byte, error) {
	return appendPacket(dst, c, v)
}

// Size returns the encoded size for version v.
func (c *Connack) Size(v Version) (int, error) { return sizePacket(c, v) }

func (*Connack) flags() byte { return 0 }

func decodeConnack(d *decoder) *Connack {
	c := &Connack{}
	ack := d.u8("connect acknowledge flags")
	if ack&^1 != 0 {
		// [MQTT-3.2.2-1] (3.1.1); section 3.2.2.1 (v5): reserved bits set
		// are a Malformed Packet.
		d.fail(malformed(CONNACK, "MQTT-3.2.2-1", "reserved acknowledge flags are set"))
	}
	c.SessionPresent = ack&1 != 0
	c.ReasonCode = ReasonCode(d.u8("reason code"))
	if d.v == V5 {
		d.properties(&c.Properties, false)
	}
	d.end()
	return c
}

func (c *Connack) bodyLen(s *sizer, v Version) int {
	noV5(s, CONNACK, v, !c.Properties.Empty(), "properties")
	n := 2
	if v == V5 {
		n += propsSize(s, &c.Properties, CONNACK, false)
	}
	return n
}

func (c *Connack) appendBody(dst []byte, v Version) []byte {
	var ack byte
	if c.SessionPresent {
		ack = 1
	}
	dst = append(dst, ack, byte(c.ReasonCode))
	if v == V5 {
		dst = appendProps(dst, &c.Properties, CONNACK, false)
	}
	return dst
}
