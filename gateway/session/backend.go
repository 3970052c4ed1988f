package session

import (
	"context"
	"errors"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// The errors a Backend returns; the driver maps them to CONNACK codes in one
// place (package server).
var (
	// ErrIdentityMismatch: the client id's session belongs to another user
	// name and cross-identity takeover is not allowed (CONNACK 0x87 / 0x05).
	ErrIdentityMismatch = errors.New("session: client id in use by another identity")
	// ErrUnavailable: the session store cannot be reached (CONNACK 0x88 /
	// 0x03).
	ErrUnavailable = errors.New("session: session store unavailable")
	// ErrStaleGuard: the session has been taken over (or deleted) since the
	// caller opened it; the call changed nothing.
	ErrStaleGuard = errors.New("session: stale guard")
)

// Backend opens and ends sessions: MemBackend now, dsd's SessionService once
// it exists. Implementations are safe for concurrent use.
type Backend interface {
	// Open opens (or resumes) the session of a client that connects, taking
	// it over from any connection that holds it, which the backend kicks
	// through its kick callback (naming the old guard). Errors wrap
	// ErrIdentityMismatch or ErrUnavailable, or are internal.
	Open(ctx context.Context, req OpenRequest) (OpenResult, error)
	// Disconnect ends a connection's hold on its session: the session is
	// deleted when its expiry is 0, otherwise kept until it expires. It
	// returns ErrStaleGuard when another connection took over since.
	Disconnect(ctx context.Context, req DisconnectRequest) error
}

// OpenRequest opens a session.
type OpenRequest struct {
	ClientID   string
	Username   string
	Version    packet.Version
	CleanStart bool
	// Expiry is the Session Expiry Interval in seconds.
	Expiry uint32
	Will   *Will
	Now    time.Time
}

// OpenResult is an opened session.
type OpenResult struct {
	SessionPresent bool
	// Guard identifies this connection's hold on the session; later calls
	// carry it and are refused once another connection took over.
	Guard uint64
	// Session is the stored state of a resumed session (subscriptions,
	// streams, seqno tracks), nil when the backend keeps none.
	Session *storagev1.Session
	// Watermarks are the shards' watermarks read after the open (by
	// shard): see ConnectResult.Watermarks.
	Watermarks []int64
}

// DisconnectRequest ends a connection's hold on a session.
type DisconnectRequest struct {
	ClientID string
	Guard    uint64
	// Will says whether the will message is to be published.
	Will bool
	// Expiry is the Session Expiry Interval in force at the end, in seconds.
	Expiry uint32
	Reason CloseReason
	Now    time.Time
}
