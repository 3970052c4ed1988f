// Package packet is the MQTT codec: it decodes and encodes the fifteen
// control packets of MQTT 3.1 (protocol name "MQIsdp", level 3), 3.1.1
// (level 4) and 5.0 (level 5), with every MQTT 5.0 property and reason code.
// It is pure: no network connections, no locks, no logging, no server
// state. References such as [MQTT-3.1.2-3] name the normative statements of
// the OASIS MQTT 5.0 standard (or 3.1.1 where marked); "section" numbers
// are those of MQTT 5.0.
//
// # Decoding is not validation
//
// Decode, DecodeBody and ReadPacket answer "is this well formed?". They take
// the protocol version of the connection as a parameter (VersionUnknown
// until CONNECT, which carries its own) and fail with a *MalformedError
// (errors.Is(err, ErrMalformed)) for anything the specification calls a
// Malformed Packet, or a Protocol Error that the decoded form cannot
// represent (a property given twice, Maximum QoS or Retain Handling 3 in
// SUBSCRIBE): bad fixed header flags, QoS 3, a remaining length over four
// bytes (or, in MQTT 5.0, not in its shortest form), lengths that run past
// the packet or leave bytes unused, ill-formed UTF-8 or U+0000, unknown
// properties or properties the packet type may not carry, bad connect
// flags and reserved bits. MalformedError.Code is the MQTT 5.0 reason code
// to answer with; before 5.0 the connection is just closed. A CONNECT with
// an unknown protocol name or level returns UnsupportedProtocolVersion (the
// server answers CONNACK 0x84, or 0x01 before 5.0) and a packet larger than
// the caller's maximum returns PacketTooLarge.
//
// Validate answers "is this allowed?" for a packet that decoded: non-zero
// packet identifiers, reason codes the packet type may carry, property
// values (Receive Maximum 0, booleans other than 0 and 1, Topic Alias
// limits), topic names, client identifier rules and the like. It returns
// nil or a ReasonCode, which implements error. Rules that need connection
// state (packet identifiers in flight, a second CONNECT, quotas,
// authorization) are the session's. Topic filters are checked one at a time
// with ValidateTopicFilter, because each earns its own SUBACK code. The
// topic rules themselves are lts.ValidateTopicName and
// lts.ValidateTopicFilter; this package adds shared subscriptions.
//
// # Encoding
//
// Every Packet has Append(dst, v), which appends the encoded packet to dst
// in one allocation at most, and Size(v), the encoded size to compare with a
// peer's Maximum Packet Size. Encoding refuses (ErrEncode) what the version
// cannot carry, such as properties in MQTT 3.1.1, rather than dropping it;
// it does not apply Validate's rules. Properties are written in identifier
// order, repeated ones (User Property, Subscription Identifier) in slice
// order. Append checks lengths and what the version can carry, not string
// contents. Every decoded packet re-encodes, and the bytes decode to an equal
// packet (FuzzRoundTrip); for canonical input they are the input itself.
//
// # Guarantees
//
// No input makes the decoder panic: every read is bounds-checked and the
// fuzz targets in this package (FuzzDecode, FuzzRoundTrip, FuzzStream) run
// on every version.
//
// Allocation is bounded by the declared length. ReadPacket reads the fixed
// header, refuses a packet over the maximum size before allocating anything,
// and then allocates exactly the remaining length (above 256 KiB the buffer
// grows as the bytes arrive, so a length that is declared but never sent
// costs at most 256 KiB). Decode allocates nothing for the packet bytes, whose
// byte fields alias the input. Beyond that the decoder allocates the packet
// struct, copies of strings (at most the remaining length in total) and
// slices sized exactly to the items present, each item taking at least two
// bytes on the wire. FuzzDecode and TestDecodeAllocationBound check that a
// decode allocates at most 16 bytes per byte of remaining length plus 2 KiB.
//
// # Differences from paho.golang
//
// The differential test (paho_test.go) compares MQTT 5.0 decoding with
// github.com/eclipse/paho.golang/packets. Where paho accepts what this
// package refuses, the specification is on this package's side:
//
//   - fixed header flags other than those listed [MQTT-2.1.3-1], and QoS 3
//     in PUBLISH [MQTT-3.3.1-4];
//   - a CONNECT with reserved flag set [MQTT-3.1.2-3], Will QoS or Retain
//     without Will [MQTT-3.1.2-11] [MQTT-3.1.2-13], Will QoS 3
//     [MQTT-3.1.2-12], an unknown protocol name or level [MQTT-3.1.2-1]
//     [MQTT-3.1.2-2], or Will Properties that only CONNECT may carry
//     (section 3.1.3.2);
//   - reserved CONNACK flags [MQTT-3.2.2-1] and reserved subscription
//     option bits, Maximum QoS 3 or Retain Handling 3 (section 3.8.3.1);
//   - ill-formed UTF-8 or U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2];
//   - non-minimal variable byte integers [MQTT-1.5.5-1];
//   - bytes left over after the last field, and property lengths or values
//     that run past the packet (paho stops reading silently);
//   - a property given twice (section 2.2.2.2, Protocol Error).
//
// paho refuses a DISCONNECT with remaining length 0, which section 3.14.2.1
// allows, and keeps only the last Subscription Identifier of a PUBLISH that
// carries several (section 3.3.4). The test holds the full table.
package packet
