package auth

import (
	"context"
	"errors"

	"github.com/stratamq/strata/gateway/packet"
)

// The results of Authenticate and Admission.Admit that refuse a client. Each
// error returned wraps exactly one of them; ConnackCode maps them to the
// CONNACK the gateway sends. The wrapping text (for the server's log) may
// say why, but never contains a password.
var (
	// ErrBadUserNameOrPassword: unknown user, wrong password, a username
	// without a password where one is needed, or a password without a
	// username. CONNACK 0x86 (MQTT 5), return code 0x04 (3.1.1).
	ErrBadUserNameOrPassword = errors.New("auth: bad user name or password")
	// ErrNotAuthorized: an anonymous client where anonymous access is not
	// allowed. CONNACK 0x87 (MQTT 5), return code 0x05 (3.1.1).
	ErrNotAuthorized = errors.New("auth: not authorized")
	// ErrConnectionRateExceeded: the zone's mqtt.max_conn_rate is used up.
	// CONNACK 0x9F (MQTT 5); a 3.1.1 client is closed without a CONNACK.
	ErrConnectionRateExceeded = errors.New("auth: connection rate exceeded")
	// ErrTooManyFailures: the client's address or user name failed to
	// authenticate more often than auth.max_failures_per_address or
	// auth.max_failures_per_username allow; refused without hashing.
	// CONNACK 0x8A banned (MQTT 5), return code 0x05 not authorized
	// (3.1.1), as EMQX answers a banned client.
	ErrTooManyFailures = errors.New("auth: too many failed authentications")
)

// ReasonCode returns the MQTT 5 CONNACK reason code for the result of
// Authenticate or Admit: Success for nil, the code of the sentinel it wraps,
// and UnspecifiedError for anything else (an internal failure).
func ReasonCode(err error) packet.ReasonCode {
	switch {
	case err == nil:
		return packet.Success
	case errors.Is(err, ErrBadUserNameOrPassword):
		return packet.BadUserNameOrPassword
	case errors.Is(err, ErrNotAuthorized):
		return packet.NotAuthorized
	case errors.Is(err, ErrConnectionRateExceeded):
		return packet.ConnectionRateExceeded
	case errors.Is(err, ErrTooManyFailures):
		return packet.Banned
	}
	return packet.UnspecifiedError
}

// ConnackCode returns the byte the gateway puts in the CONNACK for the result
// of Authenticate or Admit: the MQTT 5 reason code, or for MQTT 3.1 and 3.1.1
// the connect return code. send is false when no CONNACK should be sent and
// the connection simply closed: a 3.1.1 client over the connection rate (the
// architecture's rule: 3.1.1 has no code for it), and any client whose
// context ended while it waited (it is gone or timed out).
func ConnackCode(err error, v packet.Version) (code byte, send bool) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, false
	}
	rc := ReasonCode(err)
	if v == packet.V5 {
		return byte(rc), true
	}
	if rc == packet.ConnectionRateExceeded {
		return 0, false
	}
	if rc == packet.UnspecifiedError {
		return packet.ConnectRefusedServerUnavailable, true
	}
	return packet.V3ConnectReturnCode(rc)
}
