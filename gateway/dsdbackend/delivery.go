package dsdbackend

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// maxRetainedPerSubscribe bounds the retained messages one SUBSCRIBE gets:
// they are held in the session's retained batch records.
const maxRetainedPerSubscribe = 10000

// Delivery is what the gateway's outbound side needs of dsd besides the
// link's entries: session commits, watermarks, replays and retained
// messages. It is safe for concurrent use.
type Delivery struct {
	// dsd is the connection of the reads not tied to a shard
	// (watermarks, retained messages) and of every read without a pool.
	dsd     *client.Client
	pool    *Pool
	reg     Registrar
	backend *Backend
	router  *Router
}

// NewDelivery returns a Delivery over dsd under the registrations of reg;
// entries go through router (the one the Lease carries).
func NewDelivery(dsd *client.Client, reg Registrar, router *Router, opts Options) *Delivery {
	return &Delivery{dsd: dsd, reg: reg, backend: New(dsd.Sessions(), reg, opts), router: router}
}

// NewRoutedDelivery is NewDelivery over the sites of pool: commits go to
// the leader of the session's shard, replays to the leader of the
// stream's shard.
func NewRoutedDelivery(pool *Pool, reg Registrar, router *Router, opts Options) *Delivery {
	return &Delivery{pool: pool, reg: reg, backend: NewRouted(pool, reg, opts), router: router}
}

// anySite is the connection for a call any site answers.
func (d *Delivery) anySite() *client.Client {
	if d.pool == nil {
		return d.dsd
	}
	return d.pool.conn(d.pool.Table().Default)
}

// forIterator is the connection to the leader of an iterator's shard.
func (d *Delivery) forIterator(it []byte) *client.Client {
	if d.pool == nil {
		return d.dsd
	}
	sh, ok := IteratorShard(it)
	if !ok {
		return d.anySite()
	}
	return d.pool.ForShard(sh)
}

// Router returns the entry router.
func (d *Delivery) Router() *Router { return d.router }

// Commit applies a session commit under its guard: nil once durable,
// session.ErrStaleGuard when the session was taken over,
// session.ErrUnavailable when dsd cannot be reached.
func (d *Delivery) Commit(ctx context.Context, c *storagev1.SessionCommit) error {
	r, err := d.reg.Held()
	if err != nil {
		return sessionError(ctx, "commit", err)
	}
	// A commit is idempotent (puts are whole values, deletions of what is
	// gone change nothing), so it is retried while dsd is unreachable and
	// the lease holds: a dsd restart then delays deliveries instead of
	// closing connections.
	return d.backend.retry(ctx, r, "commit", sessionError, func(ctx context.Context) error {
		_, err := d.backend.sessions(c.GetClientId()).CommitSession(ctx, &dsdv1.CommitSessionRequest{Commit: c})
		return err
	})
}

// Watermarks returns dsd's start watermark per shard, indexed by shard.
func (d *Delivery) Watermarks(ctx context.Context) ([]int64, error) {
	r, err := d.reg.Held()
	if err != nil {
		return nil, sessionError(ctx, "watermarks", err)
	}
	var out *dsdv1.WatermarksResponse
	err = d.backend.retry(ctx, r, "watermarks", sessionError, func(ctx context.Context) (err error) {
		out, err = d.anySite().Storage.Watermarks(ctx, &dsdv1.WatermarksRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	starts := make([]int64, len(out.GetWatermarks()))
	for _, w := range out.GetWatermarks() {
		if int(w.GetShard()) >= len(starts) {
			return nil, fmt.Errorf("dsdbackend: watermarks: shard %d of %d", w.GetShard(), len(starts))
		}
		starts[w.GetShard()] = w.GetStartTimeUs()
	}
	return starts, nil
}

// Replay reads exactly count messages from iterator (fewer only if the
// stream holds fewer); session.ErrStreamGone when its generation was
// dropped.
func (d *Delivery) Replay(ctx context.Context, iterator []byte, count uint32) ([]*storagev1.Message, error) {
	r, err := d.reg.Held()
	if err != nil {
		return nil, sessionError(ctx, "replay", err)
	}
	var out *dsdv1.NextResponse
	err = d.backend.callRouted(ctx, r, func(ctx context.Context) (err error) {
		out, err = d.forIterator(iterator).Storage.Next(ctx, &dsdv1.NextRequest{Iterator: iterator, Count: &count, MaxMessages: count})
		return err
	})
	if status.Code(err) == codes.NotFound {
		// lint:nowrap the NotFound status is detail: wrapped, the one
		// status-to-reason-code translation would classify it instead of
		// ErrStreamGone.
		return nil, fmt.Errorf("dsdbackend: replay: %w: %v", session.ErrStreamGone, err)
	}
	if err != nil {
		return nil, sessionError(ctx, "replay", err)
	}
	msgs := make([]*storagev1.Message, 0, len(out.GetMessages()))
	for _, m := range out.GetMessages() {
		msgs = append(msgs, m.GetMessage())
	}
	return msgs, nil
}

var errTooManyRetained = errors.New("enough")

// Retained returns the retained messages matching filter, at most
// maxRetainedPerSubscribe of them. With several sites, each shard's leader
// lists its shards' records and they are merged here.
func (d *Delivery) Retained(ctx context.Context, filter string) ([]*storagev1.Message, error) {
	r, err := d.reg.Held()
	if err != nil {
		return nil, sessionError(ctx, "retained", err)
	}
	var msgs []*storagev1.Message
	collect := func(m *storagev1.Message) error {
		if len(msgs) >= maxRetainedPerSubscribe {
			return errTooManyRetained
		}
		msgs = append(msgs, m)
		return nil
	}
	err = d.backend.callRouted(ctx, r, func(ctx context.Context) error {
		msgs = msgs[:0]
		if sources := d.retainedSources(); sources != nil {
			return client.MatchRetainedMerged(ctx, sources, filter, 0, collect)
		}
		return d.anySite().MatchRetained(ctx, filter, 0, collect)
	})
	if err != nil && !errors.Is(err, errTooManyRetained) {
		return nil, sessionError(ctx, "retained", err)
	}
	return msgs, nil
}

// retainedSources is the pool's RetainedSources (nil without a pool).
func (d *Delivery) retainedSources() []client.RetainedSource {
	if d.pool == nil {
		return nil
	}
	return d.pool.RetainedSources()
}
