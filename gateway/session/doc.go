// Package session is the gateway's per-connection MQTT state machine: events
// in, actions out. It holds no network connection, starts no goroutines, reads
// no clock and does no I/O; the driver (package gateway/server) reads packets,
// passes them in together with the current time, and carries out the actions
// it gets back: send a packet, admit and open a session, hand over an
// application message, end the session, close the connection. Every decision
// about the protocol is made here, so it is tested with scripts (testdata/)
// that feed packets and clock advances and print the actions.
//
// # Events and actions
//
// New starts a Machine for a fresh connection. The driver then calls Packet
// for each decoded packet, Malformed or UnsupportedProtocol for a packet that
// did not decode, Tick when the time returned by Deadline has passed, Lost
// when the connection failed (end of stream, write error, slow consumer),
// Kick when the session was taken over elsewhere, and Shutdown when the
// gateway stops. Each returns the actions to carry out, in order. A Connect
// action asks the driver to admit, authenticate and open the session (the
// I/O the machine cannot do); the driver answers with ConnectDone, and only
// then is the CONNACK sent. Until ConnectDone the driver reads no further
// packets of that connection, so packets a client pipelines after CONNECT
// wait in the socket.
//
// The machine owes the driver no locking: the driver serialises the calls
// (package server holds a per-connection mutex around them).
//
// # Keep-alive
//
// The keep-alive in force is the client's CONNECT value, except that for MQTT
// 5 clients a configured server keep-alive (zone.<z>.server_keepalive)
// replaces it and is sent in CONNACK as Server Keep Alive [MQTT-3.2.2-21]
// [MQTT-3.2.2-22]; without one, a maximum (zone.<z>.max_keepalive) lowers a
// larger value the same way. An MQTT 3.1/3.1.1 client cannot be told another
// value, so one asking for more than the maximum is refused with CONNACK 0x02.
// The connection is closed when no packet arrives for keep-alive × backoff × 2
// (zone.<z>.keepalive_backoff, default 0.75: the standard's 1.5×); Keep Alive 0
// disables the check. Such a close is abnormal: the session ends with its will
// to be published (DISCONNECT 0x8D is sent first to MQTT 5 clients, in case the
// connection is only half dead).
//
// Before CONNECT the deadline is Config.ConnectTimeout from New: a connection
// that sends nothing, or not a CONNECT, is closed.
//
// A client whose credentials expire (ConnectResult.AuthExpires: a JWT's
// "exp") is closed then, whatever the keep-alive: Deadline is the earlier of
// the two, and MQTT 5 clients get DISCONNECT 0xA0 (maximum connect time).
//
// # Authorization
//
// The driver's Authorizer decides PUBLISH (denied: see Config.DisconnectOnDeny)
// and SUBSCRIBE filters. A granted filter that a deny rule overlaps is not
// whole (AccessSubscribeWhole, asked once per subscription): each of its
// messages is checked by topic (AccessDeliver) when its PUBLISH is built, and
// a denied one is dropped after numbering, its seqno released like an expired
// message's, so packet ids and delivery progress go on.
//
// # Inbound PUBLISH
//
// A PUBLISH that passes validation, Topic Alias resolution and the ACL is
// queued; the machine returns a Store action for the queue unless a Store is
// in flight, numbering the messages 1, 2, 3 … as the producer sequence of
// (client id, guard), and the driver answers with StoreDone. Only then are
// PUBACK (QoS 1) and PUBREC (QoS 2) sent, in publish order. PUBREL becomes a
// Release action, and PUBCOMP is sent from ReleaseDone. More unfinished QoS
// 1/2 PUBLISHes than Config.ReceiveMaximum is DISCONNECT 0x93 (MQTT 5). A
// failed Store answers its QoS 1/2 messages with StoreCode (MQTT 5) and
// closes the connection; ErrStaleGuard closes it as taken over.
//
// # Delivery
//
// SUBSCRIBE is validated and answered (granted QoS, or a failure code per
// filter; shared subscriptions get 0x9E while SharedAvailable is off), and a
// granted subscription starts at dsd's watermarks. The outbound half
// (deliver*.go) asks the driver to watch streams and read batches, commits a
// batch record before the batch's first PUBLISH, numbers seqnos and packet
// ids, and replays exactly the recorded batch after a reconnect
// (docs/delivery.md). A durable session commits this state to dsd; any other
// lives and dies with the connection. An MQTT 5 client that announces a
// Topic Alias Maximum gets outbound Topic Aliases from a per-connection LRU
// (alias_out.go); a new connection starts with none.
//
// # Local messages
//
// Local delivers messages the gateway publishes itself (its $SYS topics):
// matched against the subscriptions, sent at QoS 0 with no seqno, record or
// commit, and never stored. A filter that can match only $SYS topics needs
// nothing from dsd (no watermarks, Watch entry or retained fetch); a new one
// gets Config.LocalRetained's latest messages with RETAIN after SUBACK.
// Clients may not publish to $SYS, nor arm a will there: refused as the ACL
// refuses.
package session
