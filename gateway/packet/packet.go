package packet

import (
	"slices"
	"strconv"
)

// Packet is one decoded MQTT control packet: *Connect, *Connack, *Publish,
// *Puback, *Pubrec, *Pubrel, *Pubcomp, *Subscribe, *Suback, *Unsubscribe,
// *Unsuback, *Pingreq, *Pingresp, *Disconnect or *Auth. The interface is
// closed: only this package implements it.
type Packet interface {
	// Type returns the control packet type.
	Type() Type
	// Append appends the packet, encoded for version v, to dst. It fails
	// with an error matching ErrEncode if the packet cannot be expressed
	// in v; dst is then returned unchanged.
	Append(dst []byte, v Version) ([]byte, error)
	// Size returns the number of bytes Append would add, fixed header
	// included: the size MQTT 5.0 compares with a Maximum Packet Size
	// [MQTT-3.1.2-24].
	Size(v Version) (int, error)

	// flags returns the low nibble of the first fixed header byte.
	flags() byte
	// appendBody appends the variable header and payload.
	appendBody(dst []byte, v Version) []byte
}

// appendPacket is the shared body of every Append method.
func appendPacket(dst []byte, p Packet, v Version) ([]byte, error) {
	n, err := remainingLength(p, v)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, 1+varintLen(uint32(n))+n)
	dst = append(dst, byte(p.Type())<<4|p.flags())
	dst = appendVarint(dst, uint32(n))
	return p.appendBody(dst, v), nil
}

func sizePacket(p Packet, v Version) (int, error) {
	n, err := remainingLength(p, v)
	if err != nil {
		return 0, err
	}
	return 1 + varintLen(uint32(n)) + n, nil
}

func remainingLength(p Packet, v Version) (int, error) {
	var s sizer
	if !v.Valid() {
		s.fail(p.Type(), "unknown protocol version "+strconv.Itoa(int(v)))
		return 0, s.err
	}
	if p.Type() == AUTH && v != V5 {
		s.fail(AUTH, "AUTH exists only in MQTT 5.0")
		return 0, s.err
	}
	n := bodyLen(&s, p, v)
	if s.err != nil {
		return 0, s.err
	}
	if n > maxRemainingLength {
		s.fail(p.Type(), "remaining length exceeds 268435455")
		return 0, s.err
	}
	return n, nil
}

// noV5 records a fault if a field only MQTT 5.0 can carry is set while
// encoding for an earlier version.
func noV5(s *sizer, t Type, v Version, set bool, what string) {
	if v != V5 && set {
		s.fail(t, what+" needs MQTT 5.0")
	}
}

// propsSize returns the size of a property block with its length prefix.
func propsSize(s *sizer, p *Properties, t Type, will bool) int {
	n := p.size(s, t, will)
	return varintLen(uint32(n)) + n
}

// appendProps appends a property block with its length prefix.
func appendProps(dst []byte, p *Properties, t Type, will bool) []byte {
	var s sizer
	return p.appendTo(dst, p.size(&s, t, will))
}

// bodyLen returns the remaining length of p and records faults in s. It
// switches on the concrete type, rather than calling through the interface,
// so that s stays on the stack and encoding allocates nothing but dst.
func bodyLen(s *sizer, p Packet, v Version) int {
	switch p := p.(type) {
	case *Connect:
		return p.bodyLen(s, v)
	case *Connack:
		return p.bodyLen(s, v)
	case *Publish:
		return p.bodyLen(s, v)
	case *Puback:
		return p.bodyLen(s, v)
	case *Pubrec:
		return p.bodyLen(s, v)
	case *Pubrel:
		return p.bodyLen(s, v)
	case *Pubcomp:
		return p.bodyLen(s, v)
	case *Subscribe:
		return p.bodyLen(s, v)
	case *Suback:
		return p.bodyLen(s, v)
	case *Unsubscribe:
		return p.bodyLen(s, v)
	case *Unsuback:
		return p.bodyLen(s, v)
	case *Pingreq, *Pingresp:
		return 0
	case *Disconnect:
		return p.bodyLen(s, v)
	case *Auth:
		return p.bodyLen(s, v)
	}
	s.fail(p.Type(), "unknown packet")
	return 0
}
