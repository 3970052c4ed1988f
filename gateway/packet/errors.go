package packet

import (
	"errors"
	"io"
)

// ErrMalformed is the sentinel every *MalformedError matches with errors.Is:
// the bytes are not a well-formed packet of the given version. The receiver
// answers with the error's Code in MQTT 5.0 (DISCONNECT, or CONNACK for a
// CONNECT) and closes; in MQTT 3.1 and 3.1.1 it just closes [MQTT-4.8.0-1]
// (3.1.1 section 4.8).
var ErrMalformed = errors.New("packet: malformed packet")

// ErrEncode is the sentinel matched by errors returned by the encoders when a
// packet cannot be put on the wire for the requested version (a string over
// 65,535 bytes, a property the packet type may not carry, an MQTT 5.0 field
// given for MQTT 3.1.1, a packet over the protocol's 268,435,455 byte limit).
var ErrEncode = errors.New("packet: cannot encode")

// MalformedError describes why a packet is not well formed.
type MalformedError struct {
	// Type is the packet type, or 0 if the fixed header itself is bad.
	Type Type
	// Code is MalformedPacket (0x81), or ProtocolError (0x82) where the
	// MQTT 5.0 specification calls the fault a Protocol Error (for example a
	// property given twice, section 2.2.2.2).
	Code ReasonCode
	// Clause is the normative statement broken, such as "MQTT-2.1.3-1", or
	// "" when the fault is a plain structural one (a length beyond the
	// packet).
	Clause string
	// Msg says what is wrong, for logs.
	Msg string
}

// Error implements error.
func (e *MalformedError) Error() string {
	s := "packet: malformed"
	if e.Code == ProtocolError {
		s = "packet: protocol error in"
	}
	if e.Type != 0 {
		s += " " + e.Type.String()
	} else {
		s += " packet"
	}
	s += ": " + e.Msg
	if e.Clause != "" {
		s += " [" + e.Clause + "]"
	}
	return s
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// ReasonCode returns e.Code.
func (e *MalformedError) ReasonCode() ReasonCode { return e.Code }

// CodeOf returns the reason code an error from this package maps to: the Code
// of a *MalformedError, or the ReasonCode itself (PacketTooLarge from the
// decoder, UnsupportedProtocolVersion from a CONNECT, any code from
// validation). For io.EOF, io.ErrUnexpectedEOF and errors from elsewhere ok
// is false.
func CodeOf(err error) (code ReasonCode, ok bool) {
	var me *MalformedError
	if errors.As(err, &me) {
		return me.Code, true
	}
	var rc ReasonCode
	if errors.As(err, &rc) {
		return rc, true
	}
	return 0, false
}

// errTruncated is returned by Decode when b ends before the packet does; it
// is io.ErrUnexpectedEOF so stream code can treat it as "read more".
var errTruncated = io.ErrUnexpectedEOF

func malformed(t Type, clause, msg string) *MalformedError {
	return &MalformedError{Type: t, Code: MalformedPacket, Clause: clause, Msg: msg}
}

func protocolError(t Type, clause, msg string) *MalformedError {
	return &MalformedError{Type: t, Code: ProtocolError, Clause: clause, Msg: msg}
}
