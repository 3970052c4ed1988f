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

// sessionError is the one place where an answer of dsd's SessionService
// becomes a session error (STYLE.md rule 8); server.connectRefusal then maps
// those to CONNACK codes.
//
//	PERMISSION_DENIED                        → session.ErrIdentityMismatch (0x87 / 0x05)
//	UNAVAILABLE, DEADLINE_EXCEEDED,
//	RESOURCE_EXHAUSTED, CANCELED (lease lost) → session.ErrUnavailable (0x88 / 0x03)
//	ABORTED, NOT_FOUND                       → session.ErrStaleGuard (the session moved on)
//	anything else                            → an internal error (0x80)
//
// ctx is the caller's context: when it was cancelled (the gateway is
// closing) the error is context.Canceled, whatever the status.
func sessionError(ctx context.Context, op string, err error) error {
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
	switch st.Code() {
	case codes.PermissionDenied:
		return fmt.Errorf("dsdbackend: %s: %w: %s", op, session.ErrIdentityMismatch, st.Message())
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled:
		return fmt.Errorf("dsdbackend: %s: %w: %s: %s", op, session.ErrUnavailable, st.Code(), st.Message())
	case codes.Aborted, codes.NotFound:
		return fmt.Errorf("dsdbackend: %s: %w: %s", op, session.ErrStaleGuard, st.Message())
	}
	return fmt.Errorf("dsdbackend: %s: %s: %s", op, st.Code(), st.Message())
}

// storeError is the one place where an answer of dsd to a Store or a
// Release becomes a session error; session.StoreCode then picks the MQTT 5
// reason code of the PUBACK / PUBREC.
//
//	ABORTED, FAILED_PRECONDITION (stale epoch),
//	NOT_FOUND (session gone)                 → session.ErrStaleGuard (taken over: close)
//	RESOURCE_EXHAUSTED                       → session.ErrQuotaExceeded (0x97)
//	UNAVAILABLE, DEADLINE_EXCEEDED, CANCELED → session.ErrUnavailable (0x80)
//	anything else                            → an internal error (0x80)
func storeError(ctx context.Context, op string, err error) error {
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
	switch st.Code() {
	case codes.Aborted, codes.FailedPrecondition, codes.NotFound:
		return fmt.Errorf("dsdbackend: %s: %w: %s", op, session.ErrStaleGuard, st.Message())
	case codes.ResourceExhausted:
		return fmt.Errorf("dsdbackend: %s: %w: %s", op, session.ErrQuotaExceeded, st.Message())
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("dsdbackend: %s: %w: %s: %s", op, session.ErrUnavailable, st.Code(), st.Message())
	}
	return fmt.Errorf("dsdbackend: %s: %s: %s", op, st.Code(), st.Message())
}
