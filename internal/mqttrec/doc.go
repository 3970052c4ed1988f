// Package mqttrec is a recording MQTT 3.1.1 and 5.0 client over a plain TCP
// connection, built on the project's codec (gateway/packet). Tests and tools
// use it as the source of truth for delivery verdicts, QoS 2 above all:
// it applies the receiver's rules itself and records what the server sent,
// so a verdict never rests on a client library's memory.
//
// # Sessions and connections
//
// A Session is the client side of an MQTT session and outlives connections,
// as a real client's persistent state does. It holds:
//
//   - the inbound QoS 2 packet identifiers for which the client sent (or
//     chose to withhold) PUBREC and has not yet seen PUBREL. This is method B
//     of MQTT 5.0 section 4.3.3 (3.1.1 section 4.3.3, figure 4.3): a QoS 2
//     PUBLISH whose identifier is not held is delivered to the application
//     and its identifier becomes held; a QoS 2 PUBLISH whose identifier is
//     held is not delivered again (it is recorded as a suppressed
//     duplicate); both are answered with PUBREC. PUBREL releases the
//     identifier and is answered with PUBCOMP, so the same identifier later
//     carries a new message;
//   - the outbound QoS 1 and 2 messages this client published that are not
//     yet complete, which Conn.Resend sends again (PUBLISH with DUP, or
//     PUBREL once PUBREC was seen) on a later connection [MQTT-4.4.0-1];
//   - the log of every PUBLISH received (Message) and every protocol
//     violation seen (Violation).
//
// Connect opens one network connection for a Session. A CONNACK with Session
// Present 0 makes the Session discard its held identifiers and its
// unfinished outbound messages, as the client must when the server has no
// session [MQTT-3.2.2-4] (v5) (3.1.1 section 3.2.2.2).
//
// QoS 1 PUBLISH packets are all delivered, with their DUP flag recorded, and
// answered with PUBACK; QoS 0 ones are delivered.
//
// # Misbehaving on purpose
//
// A test can make a connection withhold the next n PUBACK, PUBREC or PUBCOMP
// packets (Options.WithholdPuback and friends, or Conn.Withhold), send them
// later (Conn.SendWithheld), stop reading (Pause, Resume), or drop the
// connection without DISCONNECT (Close) to simulate a crash while messages
// are unacknowledged.
//
// # Violations
//
// What the server does wrong is recorded, never panicked on: a QoS 1 or 2
// PUBLISH with packet identifier 0 [MQTT-2.2.1-3] (v5), a PUBLISH that reuses
// an identifier still in flight for a different message, a PUBREL for an
// identifier the session does not hold (answered with PUBCOMP Packet
// Identifier not found, 0x92, in MQTT 5.0), more unacknowledged QoS 1 and 2
// PUBLISH packets than the Receive Maximum the client announced
// [MQTT-3.3.4-7] (v5), Session Present 1 after a clean start [MQTT-3.2.2-2]
// (v5), acknowledgements for identifiers not in flight, packets a server
// may not send, and malformed packets, which end the connection with an
// error matching packet.ErrMalformed.
//
// # Goroutines
//
// Each connection has a reader goroutine and, with a keep alive, a pinger.
// Both end when the connection ends; Close and Disconnect wait for them.
// Callbacks (SessionOptions.OnMessage, OnViolation) run on the reader
// goroutine, in the order the packets arrived, before the acknowledgement
// is sent: like an application that processes a message and then acks it.
package mqttrec
