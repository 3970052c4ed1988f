package dsdbackend

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
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

// entryCodes say what the code of an entry that dsd ended means:
//
//	NOT_FOUND                     → session.EntryGone (generation dropped)
//	ABORTED, FAILED_PRECONDITION  → session.EntryStale (taken over)
//	RESOURCE_EXHAUSTED            → session.EntryError wrapping
//	                                session.ErrQuotaExceeded (the link holds
//	                                dsd's durable_sessions.max_link_entries):
//	                                DISCONNECT 0x97 quota exceeded
//	anything else                 → session.EntryError (the connection closes)
var entryCodes = map[codes.Code]session.EntryFailure{
	codes.NotFound:           session.EntryGone,
	codes.Aborted:            session.EntryStale,
	codes.FailedPrecondition: session.EntryStale,
}

// entryError translates the error event of an entry that ended.
func entryError(e *dsdv1.EntryError) (session.EntryFailure, error) {
	code := codes.Code(e.GetCode())
	if code == codes.ResourceExhausted {
		return session.EntryError, fmt.Errorf("dsdbackend: entry %d: %w: %s: %s", e.GetEntryId(), session.ErrQuotaExceeded, code, e.GetMessage())
	}
	f, ok := entryCodes[code]
	if !ok {
		f = session.EntryError
	}
	return f, fmt.Errorf("dsdbackend: entry %d: %s: %s", e.GetEntryId(), code, e.GetMessage())
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
	return translateCode(op, st.Code(), st.Message(), table)
}

// translateCode is translate for a status dsd sent as a code and a message
// (a Store the ingest stream answered as failed).
func translateCode(op string, code codes.Code, msg string, table map[codes.Code]error) error {
	if kind, ok := table[code]; ok {
		return fmt.Errorf("dsdbackend: %s: %w: %s: %s", op, kind, code, msg)
	}
	return fmt.Errorf("dsdbackend: %s: %s: %s", op, code, msg)
}
