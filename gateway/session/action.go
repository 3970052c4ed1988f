package session

import (
	"time"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Action is one thing the driver must do, in the order given: Send, Connect,
// Store, Release, Denied, EndSession or Close.
type Action interface{ action() }

// Send writes Packet to the client, encoded for Version.
type Send struct {
	Packet  packet.Packet
	Version packet.Version
}

// Connect asks the driver to admit the client (connection rate),
// authenticate it and open its session, then to call Machine.ConnectDone
// with the result.
type Connect struct {
	Request ConnectRequest
}

// Store asks the driver to store messages the client published
// (Storage.Store) without blocking the connection, then to call
// Machine.StoreDone with the result. The machine has at most one Store in
// flight.
type Store struct {
	Request StoreRequest
}

// Release asks the driver to drop a held QoS 2 packet id
// (Storage.Release), then to call Machine.ReleaseDone with the result.
type Release struct {
	Request ReleaseRequest
}

// Denied reports a PUBLISH or SUBSCRIBE the ACL refused, for the driver's
// log and metrics; the machine has already answered the client.
type Denied struct {
	Access Access
	Topic  string
}

// EndSession tells the driver that this connection no longer serves the
// session it opened: tell the backend, with the guard, whether the will is
// to be published and the expiry in force.
type EndSession struct {
	ClientID string
	Guard    uint64
	// Will is true for every end except a DISCONNECT with reason 0x00
	// (the table in ARCHITECTURE.md section 6).
	Will bool
	// Expiry is the Session Expiry Interval in seconds at the end (a
	// DISCONNECT may change it).
	Expiry uint32
	Reason CloseReason
}

// Close closes the connection once the packets sent before it are written.
type Close struct {
	Reason CloseReason
}

func (Send) action()       {}
func (Connect) action()    {}
func (Store) action()      {}
func (Release) action()    {}
func (Denied) action()     {}
func (EndSession) action() {}
func (Close) action()      {}

// CloseReason says why a connection ended, for logs and metrics.
type CloseReason string

// The reasons a connection ends.
const (
	ReasonClientDisconnect CloseReason = "client_disconnect"
	ReasonKeepAliveTimeout CloseReason = "keepalive_timeout"
	ReasonConnectTimeout   CloseReason = "connect_timeout"
	ReasonConnectRefused   CloseReason = "connect_refused"
	ReasonProtocolError    CloseReason = "protocol_error"
	ReasonMalformed        CloseReason = "malformed_packet"
	ReasonPacketTooLarge   CloseReason = "packet_too_large"
	ReasonNotSupported     CloseReason = "not_supported"
	ReasonNetworkError     CloseReason = "network_error"
	ReasonSlowConsumer     CloseReason = "slow_consumer"
	ReasonTakenOver        CloseReason = "taken_over"
	ReasonShutdown         CloseReason = "shutdown"
	// ReasonLeaseLost: the gateway lost its lease with dsd, so it may no
	// longer serve sessions (ARCHITECTURE.md section 6).
	ReasonLeaseLost     CloseReason = "lease_lost"
	ReasonInternalError CloseReason = "internal_error"
	// ReasonBackendError: dsd refused or could not take a Store or
	// Release.
	ReasonBackendError CloseReason = "backend_error"
	// ReasonNotAuthorized: the ACL refused a PUBLISH or SUBSCRIBE and
	// acl.deny_action is "disconnect".
	ReasonNotAuthorized CloseReason = "not_authorized"
	// ReasonAuthExpired: the credentials the client connected with (a JWT)
	// expired.
	ReasonAuthExpired CloseReason = "auth_expired"
	// ReasonQuotaExceeded: the client exceeded a limit that has no
	// per-packet answer (SUBSCRIBE and UNSUBSCRIBE packets queued).
	ReasonQuotaExceeded CloseReason = "quota_exceeded"
)

// ConnectRequest is what the driver needs to admit, authenticate and open a
// session: the CONNECT as the machine resolved it.
type ConnectRequest struct {
	Version packet.Version
	// ClientID is the client identifier, assigned by the gateway when
	// AssignedClientID is set.
	ClientID         string
	AssignedClientID bool
	CleanStart       bool
	// Expiry is the Session Expiry Interval in force, in seconds.
	Expiry uint32
	// KeepAlive is the keep-alive in force, in seconds.
	KeepAlive    uint16
	Username     string
	UsernameFlag bool
	Password     []byte
	PasswordFlag bool
	// Will is the will message, nil without one.
	Will *Will
}

// Will is a will message from CONNECT.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Delay is the Will Delay Interval in seconds (MQTT 5).
	Delay      uint32
	Properties packet.Properties
}

// ConnectResult is the driver's answer to a Connect action.
type ConnectResult struct {
	// Code is Success, or the MQTT 5 reason code to refuse the client with
	// (MQTT 3.1/3.1.1 clients get the matching return code, or a plain
	// close when there is none).
	Code packet.ReasonCode
	// NoConnack closes a refused connection without a CONNACK (a 3.1.1
	// client over the connection rate, a client that went away).
	NoConnack bool
	// SessionPresent and Guard describe the opened session.
	SessionPresent bool
	Guard          uint64
	// Authorize decides PUBLISH and SUBSCRIBE for this client; nil allows
	// everything.
	Authorize Authorizer
	// Session is the stored session a client resumes (SessionPresent), nil
	// for a new one.
	Session *storagev1.Session
	// Watermarks, by shard, are dsd's watermarks read after the session
	// was opened: a message stored below them may have been sent by the
	// session's previous connection without a record (QoS 1 is sent before
	// its record is durable), so a resumed session sends such QoS 1
	// messages with DUP. Nil: every QoS 1 message read before the first
	// commit of this connection is sent with DUP.
	Watermarks []int64
	// AuthExpires, when set, is when the client's credentials expire (a
	// JWT's "exp"): the connection is closed then, MQTT 5 clients with
	// DISCONNECT 0xA0 (maximum connect time).
	AuthExpires time.Time
}

// Access is what a client asks to do with a topic.
type Access uint8

// The accesses an Authorizer decides.
const (
	// AccessPublish: may the client publish to this topic name?
	AccessPublish Access = iota + 1
	// AccessSubscribe: may the client subscribe to this topic filter?
	AccessSubscribe
	// AccessSubscribeWhole: may every topic name this granted topic filter
	// matches be delivered without asking AccessDeliver for each message?
	// False when a deny rule overlaps the filter ("#" after a deny of
	// "secret/#"); asked once per subscription.
	AccessSubscribeWhole
	// AccessDeliver: may a message published to this topic name be
	// delivered to the client? Asked, per message, only for subscriptions
	// that are not whole.
	AccessDeliver
)

// String returns "publish", "subscribe", "subscribe_whole" or "deliver".
func (a Access) String() string {
	switch a {
	case AccessSubscribe:
		return "subscribe"
	case AccessSubscribeWhole:
		return "subscribe_whole"
	case AccessDeliver:
		return "deliver"
	}
	return "publish"
}

// Authorizer reports whether the connection's client may do a with topic
// (see Access). It must not block.
type Authorizer func(a Access, topic string) bool
