package packet

import "strconv"

// Version is the MQTT protocol version, as carried in the Protocol Level byte
// of CONNECT.
type Version byte

// The protocol versions the codec understands.
const (
	// V31 is MQTT 3.1 (protocol name "MQIsdp", level 3).
	V31 Version = 3
	// V311 is MQTT 3.1.1 (protocol name "MQTT", level 4).
	V311 Version = 4
	// V5 is MQTT 5.0 (protocol name "MQTT", level 5).
	V5 Version = 5
)

// Valid reports whether v is one of V31, V311 and V5.
func (v Version) Valid() bool { return v == V31 || v == V311 || v == V5 }

// String returns the version as it is usually written ("3.1.1").
func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "Version(" + strconv.Itoa(int(v)) + ")"
}

// protocolName is the Protocol Name a CONNECT of version v carries.
func (v Version) protocolName() string {
	if v == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

// Type is the MQTT Control Packet type, the high nibble of the first byte of
// the fixed header (section 2.1.2).
type Type byte

// The fifteen control packet types. Type 0 is reserved in every version and
// AUTH exists only in MQTT 5.0 (15 is reserved before it).
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{
	"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
	"PINGRESP", "DISCONNECT", "AUTH",
}

// String returns the spec name of the packet type ("PUBLISH").
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// fixedFlags returns the only value the four flag bits of the fixed header may
// take for t; PUBLISH, whose flags carry DUP, QoS and RETAIN, is handled by
// its decoder. [MQTT-2.1.3-1]
func (t Type) fixedFlags() byte {
	switch t {
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		return 0x02
	}
	return 0
}
