package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Limits of ListSessions.
const (
	defaultListSessions = 100
	maxListSessions     = 1000
)

// sessionService implements strata.dsd.v1.SessionService over a storage.DB.
type sessionService struct {
	dsdv1.UnimplementedSessionServiceServer
	db *storage.DB
	// allowCrossIdentityTakeover is dsd's own policy (Options): a request
	// may ask for a takeover across usernames, but gets it only when dsd
	// allows it.
	allowCrossIdentityTakeover bool
}

func (s *sessionService) OpenSession(ctx context.Context, req *dsdv1.OpenSessionRequest) (*dsdv1.OpenSessionResponse, error) {
	res, err := s.db.OpenSession(ctx, storage.OpenSessionRequest{
		ClientID: req.GetClientId(), Username: req.GetUsername(), ProtocolVersion: req.GetProtocolVersion(),
		CleanStart: req.GetCleanStart(), ExpiryIntervalS: req.GetExpiryIntervalS(), Will: req.GetWill(),
		GatewayID: req.GetGatewayId(), GatewayEpoch: req.GetGatewayEpoch(),
		AllowCrossIdentityTakeover: s.allowCrossIdentityTakeover && req.GetAllowCrossIdentityTakeover(),
	})
	if err != nil {
		return nil, statusFor(err)
	}
	out := &dsdv1.OpenSessionResponse{SessionPresent: res.SessionPresent, Guard: res.Guard, Session: res.Session, TakenOver: res.TakenOver}
	if res.SessionPresent {
		// A new session has read nothing before. A message stored at or
		// above the watermark of the previous connection's end cannot have
		// been sent by it: it goes without DUP.
		out.WatermarksUs = s.db.Watermarks()
		if w := res.EndedWatermarkUs; w > 0 {
			for i := range out.WatermarksUs {
				out.WatermarksUs[i] = min(out.WatermarksUs[i], w)
			}
		}
	}
	return out, nil
}

func (s *sessionService) CommitSession(ctx context.Context, req *dsdv1.CommitSessionRequest) (*dsdv1.CommitSessionResponse, error) {
	if req.GetCommit() == nil {
		return nil, statusFor(fmt.Errorf("%w: commit session: no commit", errInvalidRequest))
	}
	if err := s.db.CommitSessionNoCopy(ctx, req.GetCommit()); err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.CommitSessionResponse{}, nil
}

func (s *sessionService) Disconnect(ctx context.Context, req *dsdv1.DisconnectRequest) (*dsdv1.DisconnectResponse, error) {
	ended, err := s.db.Disconnect(ctx, storage.DisconnectRequest{
		ClientID: req.GetClientId(), Guard: req.GetGuard(), Abnormal: req.GetAbnormal(), ExpiryIntervalS: req.ExpiryIntervalS,
	})
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.DisconnectResponse{Ended: ended}, nil
}

func (s *sessionService) DeleteSession(ctx context.Context, req *dsdv1.DeleteSessionRequest) (*dsdv1.DeleteSessionResponse, error) {
	// An unguarded delete passed the admin check of the method table (authz.go).
	deleted, err := s.db.DeleteSession(ctx, req.GetClientId(), req.Guard)
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.DeleteSessionResponse{Deleted: deleted}, nil
}

func (s *sessionService) Release(ctx context.Context, req *dsdv1.ReleaseRequest) (*dsdv1.ReleaseResponse, error) {
	if req.GetPacketId() == 0 || req.GetPacketId() > math.MaxUint16 {
		return nil, statusFor(fmt.Errorf("%w: release: packet id %d outside 1..65535", errInvalidRequest, req.GetPacketId()))
	}
	released, err := s.db.Release(ctx, req.GetClientId(), req.GetGuard(), uint16(req.GetPacketId()))
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.ReleaseResponse{Released: released}, nil
}

func (s *sessionService) GetSession(ctx context.Context, req *dsdv1.GetSessionRequest) (*dsdv1.GetSessionResponse, error) {
	// Only the shard's leader answers (a follower's view may be behind).
	if err := s.db.ReadRefusal(s.db.ShardOf(req.GetClientId())); err != nil {
		return nil, statusFor(err)
	}
	sess, shard, ok := s.db.GetSession(req.GetClientId())
	if !ok {
		return nil, statusFor(fmt.Errorf("%w: %q", storage.ErrSessionNotFound, req.GetClientId()))
	}
	return &dsdv1.GetSessionResponse{Session: sess, Shard: uint32(shard)}, nil
}

func (s *sessionService) ListSessions(ctx context.Context, req *dsdv1.ListSessionsRequest) (*dsdv1.ListSessionsResponse, error) {
	cur, err := decodeSessionToken(req.GetPageToken())
	if err != nil {
		return nil, statusFor(err)
	}
	n := int(req.GetPageSize())
	if n == 0 {
		n = defaultListSessions
	}
	only := map[int]bool{}
	for _, sh := range req.GetShards() {
		only[int(sh)] = true
	}
	for sh := range s.db.NShards() {
		if len(only) > 0 && !only[sh] {
			continue
		}
		if err := s.db.ReadRefusal(sh); err != nil {
			return nil, statusFor(err)
		}
	}
	for sh := range only {
		if sh >= s.db.NShards() {
			return nil, statusFor(fmt.Errorf("%w: list sessions: shard %d of %d", errInvalidRequest, sh, s.db.NShards()))
		}
	}
	var filter func(int) bool
	if len(only) > 0 {
		filter = func(sh int) bool { return only[sh] }
	}
	page, next := s.db.ListSessionsOf(filter, cur, min(n, maxListSessions))
	out := &dsdv1.ListSessionsResponse{Sessions: make([]*dsdv1.SessionSummary, len(page))}
	for i, p := range page {
		out.Sessions[i] = &dsdv1.SessionSummary{Record: p.Record, Shard: uint32(p.Shard), Subscriptions: uint32(p.Subscriptions), Streams: uint32(p.Streams)}
	}
	if next != nil {
		out.NextPageToken = encodeSessionToken(*next)
	}
	return out, nil
}

// A page token is hex(shard (2) | client id) of the last session listed.
func encodeSessionToken(c storage.SessionCursor) string {
	return hex.EncodeToString(append(binary.BigEndian.AppendUint16(nil, uint16(c.Shard)), c.After...))
}

func decodeSessionToken(tok string) (storage.SessionCursor, error) {
	if tok == "" {
		return storage.SessionCursor{}, nil
	}
	b, err := hex.DecodeString(tok)
	if err != nil || len(b) < 2 {
		return storage.SessionCursor{}, fmt.Errorf("%w: bad page token %q", errInvalidRequest, tok)
	}
	return storage.SessionCursor{Shard: int(binary.BigEndian.Uint16(b)), After: string(b[2:]), Started: true}, nil
}

// packetIDs converts a Store's QoS 2 packet ids.
func packetIDs(ids []uint32) ([]uint16, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out := make([]uint16, len(ids))
	for i, id := range ids {
		if id > math.MaxUint16 {
			return nil, fmt.Errorf("%w: store: packet id %d > 65535", errInvalidRequest, id)
		}
		out[i] = uint16(id)
	}
	return out, nil
}
