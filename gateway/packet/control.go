package packet

// Pingreq is the PINGREQ packet (section 3.12).
type Pingreq struct{}

// Pingresp is the PINGRESP packet (section 3.13).
type Pingresp struct{}

// Disconnect is the DISCONNECT packet (section 3.14). Before MQTT 5.0 it has
// no fields and only a client sends it.
type Disconnect struct {
	// ReasonCode is the Disconnect Reason Code (MQTT 5.0).
	ReasonCode ReasonCode
	// Properties are the DISCONNECT properties (MQTT 5.0).
	Properties Properties
}

// Auth is the AUTH packet (section 3.15) of MQTT 5.0 enhanced
// authentication.
type Auth struct {
	// ReasonCode is the Authenticate Reason Code.
	ReasonCode ReasonCode
	// Properties are the AUTH properties.
	Properties Properties
}

// Type returns PINGREQ.
func (*Pingreq) Type() Type { return PINGREQ }

// Type returns PINGRESP.
func (*Pingresp) Type() Type { return PINGRESP }

// Type returns DISCONNECT.
func (*Disconnect) Type() Type { return DISCONNECT }

// Type returns AUTH.
func (*Auth) Type() Type { return AUTH }

// Append appends the packet encoded for version v.
func (p *Pingreq) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Append appends the packet encoded for version v.
func (p *Pingresp) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Append appends the packet encoded for version v. In MQTT 5.0 the reason
// code and properties are left out when they are Normal disconnection and
// empty (section 3.14.2.1).
func (p *Disconnect) Append(dst []byte, v Version) ([]byte, error) {
	return appendPacket(dst, p, v)
}

// Append appends the packet encoded for MQTT 5.0, the only version with
// AUTH. The reason code and properties are left out when they are Success
// and empty (section 3.15.2.1).
func (p *Auth) Append(dst []byte, v Version) ([]byte, error) { return appendPacket(dst, p, v) }

// Size returns the encoded size for version v.
func (p *Pingreq) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Pingresp) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Disconnect) Size(v Version) (int, error) { return sizePacket(p, v) }

// Size returns the encoded size for version v.
func (p *Auth) Size(v Version) (int, error) { return sizePacket(p, v) }

func (*Pingreq) flags() byte    { return 0 }
func (*Pingresp) flags() byte   { return 0 }
func (*Disconnect) flags() byte { return 0 }
func (*Auth) flags() byte       { return 0 }

func (*Pingreq) appendBody(dst []byte, _ Version) []byte  { return dst }
func (*Pingresp) appendBody(dst []byte, _ Version) []byte { return dst }

// decodeDisconnect decodes a DISCONNECT: empty before MQTT 5.0; in 5.0 a
// remaining length of 0 is Normal disconnection (section 3.14.2.1).
func decodeDisconnect(d *decoder) *Disconnect {
	p := &Disconnect{}
	if d.v == V5 {
		d.reasonAndProperties(&p.ReasonCode, &p.Properties)
	}
	d.end()
	return p
}

// decodeAuth decodes an AUTH: a remaining length of 0 is Success with no
// properties (section 3.15.2.1).
func decodeAuth(d *decoder) *Auth {
	p := &Auth{}
	d.reasonAndProperties(&p.ReasonCode, &p.Properties)
	d.end()
	return p
}

func (p *Disconnect) bodyLen(s *sizer, v Version) int {
	noV5(s, DISCONNECT, v, p.ReasonCode != NormalDisconnection || !p.Properties.Empty(), "reason code or properties")
	return reasonAndPropertiesSize(s, DISCONNECT, v, p.ReasonCode, &p.Properties)
}

func (p *Disconnect) appendBody(dst []byte, v Version) []byte {
	return appendReasonAndProperties(dst, DISCONNECT, v, p.ReasonCode, &p.Properties)
}

func (p *Auth) bodyLen(s *sizer, v Version) int {
	return reasonAndPropertiesSize(s, AUTH, v, p.ReasonCode, &p.Properties)
}

func (p *Auth) appendBody(dst []byte, v Version) []byte {
	return appendReasonAndProperties(dst, AUTH, v, p.ReasonCode, &p.Properties)
}
