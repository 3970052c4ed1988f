package dsdbackend

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

func TestSessionError(t *testing.T) {
	internal := errors.New("internal")
	for _, tc := range []struct {
		err  error
		want error
	}{
		{nil, nil},
		{status.Error(codes.PermissionDenied, "client id held by user a"), session.ErrIdentityMismatch},
		{status.Error(codes.Unavailable, "connection refused"), session.ErrUnavailable},
		{status.Error(codes.DeadlineExceeded, "slow"), session.ErrUnavailable},
		{status.Error(codes.ResourceExhausted, "dsd: disk full: 1 bytes free under the watermark 268435456 on data"), session.ErrQuotaExceeded},
		{status.Error(codes.Canceled, "lease lost"), session.ErrUnavailable},
		{context.DeadlineExceeded, session.ErrUnavailable},
		{fmt.Errorf("%w: %w", session.ErrUnavailable, errNotRegistered), session.ErrUnavailable},
		{status.Error(codes.Aborted, "stale guard"), session.ErrStaleGuard},
		{status.Error(codes.NotFound, "no session"), session.ErrStaleGuard},
		{status.Error(codes.InvalidArgument, "expiry"), internal},
		{status.Error(codes.Internal, "boom"), internal},
		{errors.New("not a status"), internal},
	} {
		got := sessionError(context.Background(), "open", tc.err)
		switch {
		case tc.want == nil:
			if got != nil {
				t.Errorf("%v: got %v, want nil", tc.err, got)
			}
		case tc.want == internal:
			for _, e := range []error{session.ErrIdentityMismatch, session.ErrUnavailable, session.ErrStaleGuard, session.ErrQuotaExceeded, context.Canceled} {
				if errors.Is(got, e) {
					t.Errorf("%v: got %v, want an internal error", tc.err, got)
				}
			}
			if got == nil {
				t.Errorf("%v: got nil", tc.err)
			}
		case !errors.Is(got, tc.want):
			t.Errorf("%v: got %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A caller that gave up (the gateway is closing) gets context.Canceled,
// whatever dsd answered: nobody waits for a CONNACK.
func TestSessionErrorCallerCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := sessionError(ctx, "open", status.Error(codes.Canceled, "context canceled"))
	if !errors.Is(got, context.Canceled) || errors.Is(got, session.ErrUnavailable) {
		t.Fatalf("got %v, want context.Canceled", got)
	}
}

func TestStoreError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
		code packet.ReasonCode
	}{
		{status.Error(codes.Aborted, "stale guard"), session.ErrStaleGuard, 0},
		{status.Error(codes.FailedPrecondition, "stale epoch"), session.ErrStaleGuard, 0},
		{status.Error(codes.NotFound, "no session"), session.ErrStaleGuard, 0},
		{status.Error(codes.ResourceExhausted, "full"), session.ErrQuotaExceeded, packet.QuotaExceeded},
		{status.Error(codes.Unavailable, "down"), session.ErrUnavailable, packet.UnspecifiedError},
		{context.DeadlineExceeded, session.ErrUnavailable, packet.UnspecifiedError},
		{status.Error(codes.Internal, "boom"), nil, packet.UnspecifiedError},
	} {
		got := storeError(context.Background(), "store", tc.err)
		if got == nil || (tc.want != nil && !errors.Is(got, tc.want)) {
			t.Errorf("%v: got %v, want %v", tc.err, got, tc.want)
		}
		if tc.code != 0 {
			if c := session.StoreCode(got); c != tc.code {
				t.Errorf("%v: code 0x%02X, want 0x%02X", tc.err, byte(c), byte(tc.code))
			}
		}
	}
	if storeError(context.Background(), "store", nil) != nil {
		t.Error("nil error mapped to non-nil")
	}
}

// TestEntryError: the code of an entry dsd ended says what the session
// does; RESOURCE_EXHAUSTED (the link's max_link_entries) is quota exceeded.
func TestEntryError(t *testing.T) {
	for _, tc := range []struct {
		code  codes.Code
		want  session.EntryFailure
		quota bool
	}{
		{codes.NotFound, session.EntryGone, false},
		{codes.Aborted, session.EntryStale, false},
		{codes.FailedPrecondition, session.EntryStale, false},
		{codes.ResourceExhausted, session.EntryError, true},
		{codes.Internal, session.EntryError, false},
	} {
		f, err := entryError(&dsdv1.EntryError{EntryId: 7, Code: uint32(tc.code), Message: "m", EntryEnded: true})
		if f != tc.want || errors.Is(err, session.ErrQuotaExceeded) != tc.quota {
			t.Errorf("%s: %v %v; want failure %v, quota %v", tc.code, f, err, tc.want, tc.quota)
		}
	}
}
