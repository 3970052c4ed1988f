package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Shared groups across sites: the storage's SharedRemote, over
// SiteService.Shared (storage/shared_remote.go says what goes where).

// Bounds of one SiteService.Shared call: the hops followed (a refusal
// names the leader as the refusing site knows it), the whole call's time
// (an election takes 1–3 s), the wait before looking for a leader again,
// and a Live question's time per site.
const (
	sharedMaxHops     = 8
	sharedCallTimeout = 8 * time.Second
	sharedRetryWait   = 100 * time.Millisecond
	sharedLiveTimeout = 2 * time.Second
)

// sharedRemote reaches the leaders of the shards this site does not lead.
type sharedRemote struct {
	cluster *cluster.Cluster
	dial    []grpc.DialOption
	mu      struct {
		sync.Mutex
		closed bool
		conns  map[string]*grpc.ClientConn
	}
}

func newSharedRemote(c *cluster.Cluster, dial []grpc.DialOption) *sharedRemote {
	return &sharedRemote{cluster: c, dial: dial}
}

var errRemoteClosed = errors.New("dsd: the server is stopping")

// client returns a SiteService client of addr, over one connection per
// address for the server's life.
func (r *sharedRemote) client(addr string) (dsdv1.SiteServiceClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return nil, errRemoteClosed
	}
	conn := r.mu.conns[addr]
	if conn == nil {
		var err error
		if conn, err = grpc.NewClient(addr, r.dial...); err != nil {
			return nil, err
		}
		if r.mu.conns == nil {
			r.mu.conns = make(map[string]*grpc.ClientConn)
		}
		r.mu.conns[addr] = conn
	}
	return dsdv1.NewSiteServiceClient(conn), nil
}

func (r *sharedRemote) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.closed = true
	for _, c := range r.mu.conns {
		_ = c.Close()
	}
	r.mu.conns = nil
}

// leaderAddress is where a refusal says to go: the leader, or a replica
// when the refusing site holds none ("": nobody known).
func leaderAddress(err error) string {
	var nl *cluster.NotLeaderError
	if !errors.As(err, &nl) {
		return ""
	}
	if nl.Address != "" {
		return nl.Address
	}
	if len(nl.Replicas) > 0 {
		return nl.Replicas[0]
	}
	return ""
}

// knownLeader is the address of shard's leader as this site's group sees
// it ("": none known, or the shard is not replicated here).
func (r *sharedRemote) knownLeader(shard int) string {
	for _, g := range r.cluster.ShardStatuses() {
		if g.Shard == shard && g.Leader != "" {
			return r.cluster.Site(g.Leader).GetAddress()
		}
	}
	return ""
}

// call sends req to the leader of shard, starting where refusal points,
// and follows the answers' leader addresses; an UNAVAILABLE answer (no
// leader yet, a leader whose read lease is not confirmed) is retried after
// a short wait at the leader this site knows by then.
func (r *sharedRemote) call(ctx context.Context, shard int, refusal error, req *dsdv1.SharedRequest) (*dsdv1.SharedResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedCallTimeout)
	defer cancel()
	addr, last := leaderAddress(refusal), refusal
	for hop := 0; hop < sharedMaxHops; hop++ {
		if addr == "" {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("dsd: shared group: shard %d: %w (last: %w)", shard, ctx.Err(), last)
			case <-time.After(sharedRetryWait):
			}
			addr = r.knownLeader(shard)
			continue
		}
		c, err := r.client(addr)
		if err != nil {
			return nil, err
		}
		resp, err := c.Shared(ctx, req)
		switch {
		case err == nil && resp.GetLeaderAddress() == "":
			return resp, nil
		case err == nil:
			addr = resp.GetLeaderAddress()
		case status.Code(err) == codes.Unavailable && ctx.Err() == nil:
			addr, last = "", err
		default:
			return nil, fmt.Errorf("dsd: shared group: shard %d at %s: %w", shard, addr, err)
		}
	}
	return nil, fmt.Errorf("dsd: shared group: shard %d: no leader answered in %d hops (last: %w)", shard, sharedMaxHops, last)
}

func (r *sharedRemote) Apply(ctx context.Context, shard int, refusal error, cmd []byte) (storage.SharedApplied, error) {
	resp, err := r.call(ctx, shard, refusal, &dsdv1.SharedRequest{Shard: uint32(shard), Op: &dsdv1.SharedRequest_Apply{Apply: cmd}})
	if err != nil {
		return storage.SharedApplied{}, err
	}
	if resp.GetMoved() {
		return storage.SharedApplied{}, storage.ErrSharedMoved
	}
	return storage.SharedApplied{Grant: resp.GetGrant(), Returned: int(resp.GetReturned()), Dropped: int(resp.GetDropped()),
		Missed: int(resp.GetMissed())}, nil
}

func (r *sharedRemote) Stream(ctx context.Context, shard int, refusal error, filter string, st storage.Stream) (storage.SharedStreamState, error) {
	q := &dsdv1.SharedStreamQuery{Filter: filter, Stream: &dsdv1.Stream{Shard: uint32(st.Shard), Generation: st.Generation,
		StaticIndex: st.StaticIndex, Structure: st.Structure}}
	resp, err := r.call(ctx, shard, refusal, &dsdv1.SharedRequest{Shard: uint32(shard), Op: &dsdv1.SharedRequest_Stream{Stream: q}})
	if err != nil {
		return storage.SharedStreamState{}, err
	}
	return storage.SharedStreamState{Cursor: resp.GetCursor(), Waiting: resp.GetWaiting()}, nil
}

func (r *sharedRemote) Subscribed(ctx context.Context, shard int, refusal error, filter string) (bool, error) {
	resp, err := r.call(ctx, shard, refusal, &dsdv1.SharedRequest{Shard: uint32(shard), Op: &dsdv1.SharedRequest_Subscribed{Subscribed: filter}})
	return resp.GetYes(), err
}

func (r *sharedRemote) ForgetIfUnused(ctx context.Context, shard int, refusal error, filter string) error {
	_, err := r.call(ctx, shard, refusal, &dsdv1.SharedRequest{Shard: uint32(shard), Op: &dsdv1.SharedRequest_ForgetIfUnused{ForgetIfUnused: filter}})
	return err
}

// Live asks every other site of the cluster, in turn; a site that does not
// answer may have members: the answer is then yes, with its error.
func (r *sharedRemote) Live(ctx context.Context, filter string) (bool, error) {
	self := r.cluster.SiteID()
	for _, site := range r.cluster.State().GetSites() {
		if site.GetId() == self {
			continue
		}
		c, err := r.client(site.GetAddress())
		if err != nil {
			return true, err
		}
		cctx, cancel := context.WithTimeout(ctx, sharedLiveTimeout)
		resp, err := c.Shared(cctx, &dsdv1.SharedRequest{Op: &dsdv1.SharedRequest_Live{Live: filter}})
		cancel()
		if err != nil {
			return true, fmt.Errorf("dsd: shared group %q: site %s did not say whether a member reads there: %w", filter, site.GetId(), err)
		}
		if resp.GetYes() {
			return true, nil
		}
	}
	return false, nil
}

// Shared serves another site's SharedRemote call.
func (s *siteService) Shared(ctx context.Context, req *dsdv1.SharedRequest) (*dsdv1.SharedResponse, error) {
	if s.db == nil {
		return nil, statusFor(errNoCluster)
	}
	out := &dsdv1.SharedResponse{}
	shard := int(req.GetShard())
	var err error
	switch op := req.GetOp().(type) {
	case *dsdv1.SharedRequest_Apply:
		var a storage.SharedApplied
		a, err = s.db.ApplyShared(ctx, shard, op.Apply)
		out.Grant, out.Returned, out.Dropped, out.Missed = a.Grant, uint64(a.Returned), uint64(a.Dropped), uint64(a.Missed)
	case *dsdv1.SharedRequest_ForgetIfUnused:
		err = s.db.ForgetSharedIfUnusedLeader(ctx, op.ForgetIfUnused)
	case *dsdv1.SharedRequest_Subscribed:
		out.Yes, err = s.db.SharedSubscribedLeader(shard, op.Subscribed)
	case *dsdv1.SharedRequest_Live:
		out.Yes = s.live != nil && s.live(op.Live)
	case *dsdv1.SharedRequest_Stream:
		st := op.Stream.GetStream()
		var state storage.SharedStreamState
		state, err = s.db.SharedStreamLeader(op.Stream.GetFilter(), storage.Stream{Shard: int(st.GetShard()),
			Generation: st.GetGeneration(), StaticIndex: st.GetStaticIndex(), Structure: st.GetStructure()})
		out.Cursor, out.Waiting = state.Cursor, state.Waiting
	default:
		err = fmt.Errorf("%w: a shared request without an operation", errInvalidRequest)
	}
	if err != nil {
		if addr := leaderAddress(err); addr != "" {
			return &dsdv1.SharedResponse{LeaderAddress: addr}, nil
		}
		if errors.Is(err, storage.ErrSharedMoved) {
			return &dsdv1.SharedResponse{Moved: true}, nil
		}
		return nil, statusFor(err)
	}
	return out, nil
}
