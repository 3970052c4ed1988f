package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/meta"
	"github.com/stratamq/strata/dsd/sitelink"
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
	{errUnauthenticated, codes.Unauthenticated},
	{errPermissionDenied, codes.PermissionDenied},
	{errLinkEntryLimit, codes.ResourceExhausted},
	{errUnknownEntry, codes.NotFound},
	{errEntryIDReused, codes.AlreadyExists},
	{errLinkServerStopping, codes.Unavailable},
	{errGatewayEpochDead, codes.FailedPrecondition},
	{errLinkLeaseExpired, codes.Unavailable},
	{errInvalidRequest, codes.InvalidArgument},
	{errNoCluster, codes.Unimplemented},
	{cluster.ErrNotRunning, codes.Unavailable},
	{cluster.ErrStopped, codes.Unavailable},
	{cluster.ErrNShardsMismatch, codes.FailedPrecondition},
	// A replicated shard's follower (or a site without a replica): the
	// message names the leader's address (cluster.NotLeaderError).
	{cluster.ErrNotLeader, codes.Unavailable},
	{cluster.ErrEntryTooLarge, codes.ResourceExhausted},
	{cluster.ErrNoSnapshot, codes.FailedPrecondition},
	{cluster.ErrNoSites, codes.InvalidArgument},
	{cluster.ErrNotReplicaSite, codes.NotFound},
	{meta.ErrNotAllocated, codes.FailedPrecondition},
	{storage.ErrSnapshot, codes.FailedPrecondition},
	{storage.ErrNotReplicated, codes.FailedPrecondition},
	{meta.ErrBadSiteID, codes.InvalidArgument},
	{sitelink.ErrBadHello, codes.InvalidArgument},
	{sitelink.ErrWrongDial, codes.FailedPrecondition},
	{sitelink.ErrSuperseded, codes.Aborted},
	{sitelink.ErrClosed, codes.Unavailable},
	{storage.ErrUnknownGeneration, codes.NotFound},
	{storage.ErrCurrentGeneration, codes.FailedPrecondition},
	{storage.ErrInvalidArgument, codes.InvalidArgument},
	{storage.ErrSequenceGap, codes.FailedPrecondition},
	{storage.ErrStaleEpoch, codes.FailedPrecondition},
	{storage.ErrStaleGuard, codes.Aborted},
	{storage.ErrSessionNotFound, codes.NotFound},
	{storage.ErrIdentityMismatch, codes.PermissionDenied},
	{storage.ErrGenerationDropped, codes.NotFound},
	{storage.ErrSharedMoved, codes.Aborted},
	{storage.ErrCorruption, codes.DataLoss},
	// A full disk first: a write that met ENOSPC is also ErrFailStop.
	{storage.ErrDiskFull, codes.ResourceExhausted},
	{storage.ErrFailStop, codes.Unavailable},
	{storage.ErrClosed, codes.Unavailable},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// statusFor is the one place where an error becomes a gRPC status. An
// error the table does not know is INTERNAL with a generic message naming
// an incident id; the error itself stays on the server, where the
// interceptors (and the link, for entry errors) log it with that id.
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
	return &internalError{err: err, id: incidentID()}
}

// internalError is an error the status table does not know. Its gRPC
// status says only "internal error" and the incident id; Unwrap gives the
// error for the server's log.
type internalError struct {
	err error
	id  string
}

func (e *internalError) Error() string { return "dsd: internal error " + e.id + ": " + e.err.Error() }
func (e *internalError) Unwrap() error { return e.err }

// GRPCStatus is what the caller sees.
func (e *internalError) GRPCStatus() *status.Status {
	return status.New(codes.Internal, "dsd: internal error (incident "+e.id+"; details in dsd's log)")
}

// incidentID is a short random id that ties a generic error to its log line.
func incidentID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
