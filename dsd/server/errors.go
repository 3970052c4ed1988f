package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/storage"
)

// errInvalidRequest is wrapped by request-shape errors found in this package.
var errInvalidRequest = errors.New("dsd: invalid request")

// statusTable maps storage errors to gRPC codes. The first match wins, so more
// specific errors come first.
var statusTable = []struct {
	err  error
	code codes.Code
}{
	{errUnknownEntry, codes.NotFound},
	{errEntryIDReused, codes.AlreadyExists},
	{errLinkServerStopping, codes.Unavailable},
	{errGatewayEpochDead, codes.FailedPrecondition},
	{errLinkLeaseExpired, codes.Unavailable},
	{errInvalidRequest, codes.InvalidArgument},
	{storage.ErrUnknownGeneration, codes.NotFound},
	{storage.ErrCurrentGeneration, codes.FailedPrecondition},
	{storage.ErrInvalidArgument, codes.InvalidArgument},
	{storage.ErrSequenceGap, codes.FailedPrecondition},
	{storage.ErrStaleEpoch, codes.FailedPrecondition},
	{storage.ErrStaleGuard, codes.Aborted},
	{storage.ErrSessionNotFound, codes.NotFound},
	{storage.ErrIdentityMismatch, codes.PermissionDenied},
	{storage.ErrGenerationDropped, codes.NotFound},
	{storage.ErrCorruption, codes.DataLoss},
	// A full disk first: a write that met ENOSPC is also ErrFailStop.
	{storage.ErrDiskFull, codes.ResourceExhausted},
	{storage.ErrFailStop, codes.Unavailable},
	{storage.ErrClosed, codes.Unavailable},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// statusFor is the one place where an error becomes a gRPC status.
func statusFor(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, row := range statusTable {
		if errors.Is(err, row.err) {
			return status.Error(row.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}
