package packet

import "strconv"

// ReasonCode is an MQTT 5.0 Reason Code (section 2.4), a one-byte result
// carried by CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
// DISCONNECT and AUTH.
//
// ReasonCode implements error, so validation hands reason codes back as
// ordinary errors: a nil error is success, and a non-nil one is the code the
// receiver answers with (or, for MQTT 3.1 and 3.1.1, the cause of a close or
// of a CONNACK return code, see V3ConnectReturnCode).
//
// Several codes share the value 0x00 (Success, Normal disconnection, Granted
// QoS 0); String gives the generic name.
type ReasonCode byte

// The MQTT 5.0 reason codes (section 2.4, table 2-6).
const (
	Success                             ReasonCode = 0x00
	NormalDisconnection                 ReasonCode = 0x00
	GrantedQoS0                         ReasonCode = 0x00
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWillMessage           ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

var reasonNames = map[ReasonCode]string{
	Success:                             "success",
	GrantedQoS1:                         "granted QoS 1",
	GrantedQoS2:                         "granted QoS 2",
	DisconnectWithWillMessage:           "disconnect with will message",
	NoMatchingSubscribers:               "no matching subscribers",
	NoSubscriptionExisted:               "no subscription existed",
	ContinueAuthentication:              "continue authentication",
	ReAuthenticate:                      "re-authenticate",
	UnspecifiedError:                    "unspecified error",
	MalformedPacket:                     "malformed packet",
	ProtocolError:                       "protocol error",
	ImplementationSpecificError:         "implementation specific error",
	UnsupportedProtocolVersion:          "unsupported protocol version",
	ClientIdentifierNotValid:            "client identifier not valid",
	BadUserNameOrPassword:               "bad user name or password",
	NotAuthorized:                       "not authorized",
	ServerUnavailable:                   "server unavailable",
	ServerBusy:                          "server busy",
	Banned:                              "banned",
	ServerShuttingDown:                  "server shutting down",
	BadAuthenticationMethod:             "bad authentication method",
	KeepAliveTimeout:                    "keep alive timeout",
	SessionTakenOver:                    "session taken over",
	TopicFilterInvalid:                  "topic filter invalid",
	TopicNameInvalid:                    "topic name invalid",
	PacketIdentifierInUse:               "packet identifier in use",
	PacketIdentifierNotFound:            "packet identifier not found",
	ReceiveMaximumExceeded:              "receive maximum exceeded",
	TopicAliasInvalid:                   "topic alias invalid",
	PacketTooLarge:                      "packet too large",
	MessageRateTooHigh:                  "message rate too high",
	QuotaExceeded:                       "quota exceeded",
	AdministrativeAction:                "administrative action",
	PayloadFormatInvalid:                "payload format invalid",
	RetainNotSupported:                  "retain not supported",
	QoSNotSupported:                     "QoS not supported",
	UseAnotherServer:                    "use another server",
	ServerMoved:                         "server moved",
	SharedSubscriptionsNotSupported:     "shared subscriptions not supported",
	ConnectionRateExceeded:              "connection rate exceeded",
	MaximumConnectTime:                  "maximum connect time",
	SubscriptionIdentifiersNotSupported: "subscription identifiers not supported",
	WildcardSubscriptionsNotSupported:   "wildcard subscriptions not supported",
}

// String returns the spec name of the code in lower case ("packet too large"),
// or "reason code 0xNN" for a value the spec does not define.
func (c ReasonCode) String() string {
	if s, ok := reasonNames[c]; ok {
		return s
	}
	return "reason code 0x" + strconv.FormatUint(uint64(c), 16)
}

// Error implements error; it returns "packet: " followed by String.
func (c ReasonCode) Error() string { return "packet: " + c.String() }

// Failure reports whether c is an error code (0x80 and above) [MQTT-2.4].
func (c ReasonCode) Failure() bool { return c >= 0x80 }

// allowedReasons lists, per packet type, the reason codes MQTT 5.0 lets it
// carry (sections 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3,
// 3.11.3, 3.14.2.1, 3.15.2.1).
var allowedReasons = map[Type][]ReasonCode{
	CONNACK: {Success, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, UnsupportedProtocolVersion,
		ClientIdentifierNotValid, BadUserNameOrPassword, NotAuthorized,
		ServerUnavailable, ServerBusy, Banned, BadAuthenticationMethod,
		TopicNameInvalid, PacketTooLarge, QuotaExceeded, PayloadFormatInvalid,
		RetainNotSupported, QoSNotSupported, UseAnotherServer, ServerMoved,
		ConnectionRateExceeded},
	PUBACK: {Success, NoMatchingSubscribers, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicNameInvalid,
		PacketIdentifierInUse, QuotaExceeded, PayloadFormatInvalid},
	PUBREL:  {Success, PacketIdentifierNotFound},
	PUBCOMP: {Success, PacketIdentifierNotFound},
	SUBACK: {GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid,
		PacketIdentifierInUse, QuotaExceeded, SharedSubscriptionsNotSupported,
		SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported},
	UNSUBACK: {Success, NoSubscriptionExisted, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid,
		PacketIdentifierInUse},
	DISCONNECT: {NormalDisconnection, DisconnectWithWillMessage,
		UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, NotAuthorized, ServerBusy,
		ServerShuttingDown, KeepAliveTimeout, SessionTakenOver,
		TopicFilterInvalid, TopicNameInvalid, ReceiveMaximumExceeded,
		TopicAliasInvalid, PacketTooLarge, MessageRateTooHigh, QuotaExceeded,
		AdministrativeAction, PayloadFormatInvalid, RetainNotSupported,
		QoSNotSupported, UseAnotherServer, ServerMoved,
		SharedSubscriptionsNotSupported, ConnectionRateExceeded,
		MaximumConnectTime, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported},
	AUTH: {Success, ContinueAuthentication, ReAuthenticate},
}

func init() {
	// PUBREC carries the same codes as PUBACK (section 3.5.2.1).
	allowedReasons[PUBREC] = allowedReasons[PUBACK]
}

// AllowedIn reports whether MQTT 5.0 lets a packet of type t carry c.
func (c ReasonCode) AllowedIn(t Type) bool {
	for _, a := range allowedReasons[t] {
		if a == c {
			return true
		}
	}
	return false
}

// The MQTT 3.1 and 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3).
const (
	ConnectAccepted                     byte = 0x00
	ConnectRefusedProtocolVersion       byte = 0x01
	ConnectRefusedIdentifierRejected    byte = 0x02
	ConnectRefusedServerUnavailable     byte = 0x03
	ConnectRefusedBadUserNameOrPassword byte = 0x04
	ConnectRefusedNotAuthorized         byte = 0x05
)

// V3ConnectReturnCode maps a reason code to the CONNACK return code a MQTT
// 3.1 or 3.1.1 server sends. ok is false for codes that have no 3.1.1
// equivalent; the server then closes the connection without a CONNACK
// [MQTT-3.2.2-5] (3.1.1).
func V3ConnectReturnCode(c ReasonCode) (code byte, ok bool) {
	switch c {
	case Success:
		return ConnectAccepted, true
	case UnsupportedProtocolVersion:
		return ConnectRefusedProtocolVersion, true
	case ClientIdentifierNotValid:
		return ConnectRefusedIdentifierRejected, true
	case ServerUnavailable, ServerBusy, ServerShuttingDown, ConnectionRateExceeded, QuotaExceeded:
		return ConnectRefusedServerUnavailable, true
	case BadUserNameOrPassword:
		return ConnectRefusedBadUserNameOrPassword, true
	case NotAuthorized, Banned:
		return ConnectRefusedNotAuthorized, true
	}
	return 0, false
}
