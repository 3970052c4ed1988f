package dsdbackend

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/gateway/session"
)

// errNotRegistered is wrapped (with session.ErrUnavailable) when the gateway
// holds no lease or its link is down.
var errNotRegistered = errors.New("dsdbackend: not registered with dsd")

// sessionCodes say what an answer of dsd's SessionService means to the
// gateway; server.connectRefusal then maps those to CONNACK codes.
//
//	PERMISSION_DENIED                        → session.ErrIdentityMismatch (0x87 / 0x05)
//	UNAVAILABLE, DEADLINE_EXCEEDED,
//	CANCELED (lease lost)                    → session.ErrUnavailable (0x88 / 0x03)
//	RESOURCE_EXHAUSTED (dsd's disk is full)  → session.ErrQuotaExceeded (0x97 / 0x03)
//	ABORTED, NOT_FOUND                       → session.ErrStaleGuard (the session moved on)
//	anything else                            → an internal error (0x80)
var sessionCodes = map[codes.Code]error{
	codes.PermissionDenied:  session.ErrIdentityMismatch,
	codes.Unavailable:       session.ErrUnavailable,
	codes.DeadlineExceeded:  session.ErrUnavailable,
	codes.ResourceExhausted: session.ErrQuotaExceeded,
	codes.Canceled:          session.ErrUnavailable,
	codes.Aborted:           session.ErrStaleGuard,
	codes.NotFound:          session.ErrStaleGuard,
}

// storeCodes say what an answer to a Store or a Release means;
// session.StoreCode then picks the MQTT 5 reason code of the PUBACK / PUBREC.
//
//	ABORTED, FAILED_PRECONDITION (stale epoch),
//	NOT_FOUND (session gone)                 → session.ErrStaleGuard (taken over: close)
//	RESOURCE_EXHAUSTED (dsd's disk is full)  → session.ErrQuotaExceeded (0x97)
//	UNAVAILABLE, DEADLINE_EXCEEDED, CANCELED → session.ErrUnavailable (0x80)
//	anything else                            → an internal error (0x80)
var storeCodes = map[codes.Code]error{
	codes.Aborted:            session.ErrStaleGuard,
	codes.FailedPrecondition: session.ErrStaleGuard,
	codes.NotFound:           session.ErrStaleGuard,
	codes.ResourceExhausted:  session.ErrQuotaExceeded,
	codes.Unavailable:        session.ErrUnavailable,
	codes.DeadlineExceeded:   session.ErrUnavailable,
	codes.Canceled:           session.ErrUnavailable,
}

// sessionError translates an error of a SessionService call (open, disconnect).
func sessionError(ctx context.Context, op string, err error) error {
	return translate(ctx, op, err, sessionCodes)
}

// storeError translates an error of a Store or a Release.
func storeError(ctx context.Context, op string, err error) error {
	return translate(ctx, op, err, storeCodes)
}

// translate is the one place where an answer of dsd becomes a session error
// (STYLE.md rule 8), by the table of the call's kind. ctx is the caller's
// context: when it was cancelled (the gateway is closing) the error is
// context.Canceled, whatever the status.
func translate(ctx context.Context, op string, err error, table map[codes.Code]error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("dsdbackend: %s: %w", op, context.Canceled)
	}
	if errors.Is(err, session.ErrUnavailable) {
		return fmt.Errorf("dsdbackend: %s: %w", op, err)
	}
	st, _ := status.FromError(err)
	if errors.Is(err, context.DeadlineExceeded) {
		st = status.FromContextError(err)
	}
	if kind, ok := table[st.Code()]; ok {
		return fmt.Errorf("dsdbackend: %s: %w: %s: %s", op, kind, st.Code(), st.Message())
	}
	return fmt.Errorf("dsdbackend: %s: %s: %s", op, st.Code(), st.Message())
}
