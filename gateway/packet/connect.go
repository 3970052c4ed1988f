package packet

// Connect is the CONNECT packet (section 3.1), the first packet a client
// sends.
type Connect struct {
	// Version is the protocol version the packet asks for; the Protocol
	// Name follows from it ("MQIsdp" for V31, "MQTT" otherwise).
	Version Version
	// CleanStart is Clean Start in MQTT 5.0 and Clean Session before it.
	CleanStart bool
	// KeepAlive is the keep alive interval in seconds.
	KeepAlive uint16
	// Properties are the CONNECT properties (MQTT 5.0).
	Properties Properties
	// ClientID is the Client Identifier; it may be empty.
	ClientID string

	// WillFlag says whether the packet carries a Will Message; the other
	// Will fields must be zero when it is false [MQTT-3.1.2-11] (v5).
	WillFlag   bool
	WillQoS    byte
	WillRetain bool
	// WillProperties are the Will Properties (MQTT 5.0).
	WillProperties Properties
	WillTopic      string
	WillPayload    []byte

	// UsernameFlag says whether Username is present.
	UsernameFlag bool
	Username     string
	// PasswordFlag says whether Password is present. Before MQTT 5.0 it
	// requires UsernameFlag [MQTT-3.1.2-22] (3.1.1).
	PasswordFlag bool
	Password     []byte
}

// Connect flag bits (section 3.1.2.3).
const (
	connReserved     = 0x01
	connCleanStart   = 0x02
	connWill         = 0x04
	connWillQoSShift = 3
	connWillRetain   = 0x20
	connPassword     = 0x40
	connUsername     = 0x80
)

// Type returns CONNECT.
func (*Connect) Type() Type { return CONNECT }

// Append appends the packet encoded for version v, which must match
// c.Version when that is set.
func (c *Connect) Append(dst []byte, v Version) ([]byte, error) {
	return appendPacket(dst, c, v)
}

// Size returns the encoded size for version v.
func (c *Connect) Size(v Version) (int, error) { return sizePacket(c, v) }

func (*Connect) flags() byte { return 0 }

func decodeConnect(d *decoder) (*Connect, error) {
	name := d.str("protocol name")
	level := d.u8("protocol level")
	if d.err != nil {
		return nil, d.err
	}
	v := Version(level)
	if !v.Valid() || name != v.protocolName() {
		// [MQTT-3.1.2-1] [MQTT-3.1.2-2]: the server answers CONNACK 0x84
		// (0x01 before 5.0) and closes; this is not a malformed packet.
		return nil, UnsupportedProtocolVersion
	}
	d.v = v
	c := &Connect{Version: v}
	flags := d.u8("connect flags")
	if d.err != nil {
		return nil, d.err
	}
	if flags&connReserved != 0 {
		d.fail(malformed(CONNECT, "MQTT-3.1.2-3", "reserved connect flag is set"))
		return nil, d.err
	}
	c.CleanStart = flags&connCleanStart != 0
	c.WillFlag = flags&connWill != 0
	c.WillQoS = flags >> connWillQoSShift & 3
	c.WillRetain = flags&connWillRetain != 0
	c.UsernameFlag = flags&connUsername != 0
	c.PasswordFlag = flags&connPassword != 0
	switch {
	case !c.WillFlag && c.WillQoS != 0:
		// [MQTT-3.1.2-11] (v5), [MQTT-3.1.2-13] (3.1.1)
		d.fail(malformed(CONNECT, "MQTT-3.1.2-11", "Will QoS without Will Flag"))
	case !c.WillFlag && c.WillRetain:
		// [MQTT-3.1.2-13] (v5), [MQTT-3.1.2-15] (3.1.1)
		d.fail(malformed(CONNECT, "MQTT-3.1.2-13", "Will Retain without Will Flag"))
	case c.WillQoS == 3:
		// [MQTT-3.1.2-12] (v5), [MQTT-3.1.2-14] (3.1.1)
		d.fail(malformed(CONNECT, "MQTT-3.1.2-12", "Will QoS 3"))
	case v != V5 && c.PasswordFlag && !c.UsernameFlag:
		d.fail(malformed(CONNECT, "MQTT-3.1.2-22", "password without user name"))
	}
	c.KeepAlive = d.u16("keep alive")
	if v == V5 {
		d.properties(&c.Properties, false)
	}
	c.ClientID = d.str("client identifier")
	if c.WillFlag {
		if v == V5 {
			d.properties(&c.WillProperties, true)
		}
		c.WillTopic = d.str("will topic")
		c.WillPayload = d.binary("will payload")
	}
	if c.UsernameFlag {
		c.Username = d.str("user name")
	}
	if c.PasswordFlag {
		c.Password = d.binary("password")
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

func (c *Connect) bodyLen(s *sizer, v Version) int {
	if c.Version != 0 && c.Version != v {
		s.fail(CONNECT, "packet is version "+c.Version.String()+", not "+v.String())
	}
	switch {
	case !c.WillFlag && (c.WillQoS != 0 || c.WillRetain || c.WillTopic != "" || c.WillPayload != nil || !c.WillProperties.Empty()):
		s.fail(CONNECT, "Will fields set without Will Flag")
	case c.WillQoS > 2:
		s.fail(CONNECT, "Will QoS above 2")
	case v != V5 && c.PasswordFlag && !c.UsernameFlag:
		s.fail(CONNECT, "password without user name needs MQTT 5.0")
	case !c.UsernameFlag && c.Username != "", !c.PasswordFlag && c.Password != nil:
		s.fail(CONNECT, "user name or password set without its flag")
	}
	noV5(s, CONNECT, v, !c.Properties.Empty() || !c.WillProperties.Empty(), "properties")
	s.str(CONNECT, "protocol name", len(v.protocolName()))
	s.n += 4 // level, flags, keep alive
	if v == V5 {
		s.n += propsSize(s, &c.Properties, CONNECT, false)
	}
	s.str(CONNECT, "client identifier", len(c.ClientID))
	if c.WillFlag {
		if v == V5 {
			s.n += propsSize(s, &c.WillProperties, CONNECT, true)
		}
		s.str(CONNECT, "will topic", len(c.WillTopic))
		s.str(CONNECT, "will payload", len(c.WillPayload))
	}
	if c.UsernameFlag {
		s.str(CONNECT, "user name", len(c.Username))
	}
	if c.PasswordFlag {
		s.str(CONNECT, "password", len(c.Password))
	}
	return s.n
}

func (c *Connect) appendBody(dst []byte, v Version) []byte {
	dst = appendString(dst, v.protocolName())
	var flags byte
	if c.CleanStart {
		flags |= connCleanStart
	}
	if c.WillFlag {
		flags |= connWill | c.WillQoS<<connWillQoSShift
		if c.WillRetain {
			flags |= connWillRetain
		}
	}
	if c.UsernameFlag {
		flags |= connUsername
	}
	if c.PasswordFlag {
		flags |= connPassword
	}
	dst = append(dst, byte(v), flags)
	dst = appendU16(dst, c.KeepAlive)
	if v == V5 {
		dst = appendProps(dst, &c.Properties, CONNECT, false)
	}
	dst = appendString(dst, c.ClientID)
	if c.WillFlag {
		if v == V5 {
			dst = appendProps(dst, &c.WillProperties, CONNECT, true)
		}
		dst = appendString(dst, c.WillTopic)
		dst = appendBinary(dst, c.WillPayload)
	}
	if c.UsernameFlag {
		dst = appendString(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendBinary(dst, c.Password)
	}
	return dst
}
