package client

import (
	"cmp"
	"context"
	"slices"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Sessions returns the SessionService stub (docs/sessions.md).
func (c *Client) Sessions() dsdv1.SessionServiceClient {
	return dsdv1.NewSessionServiceClient(c.conn)
}

// ListAllSessions pages through ListSessions and calls fn for each session
// in (shard, client id) order, stopping at fn's first error. With shards,
// only those (which this site must lead).
func (c *Client) ListAllSessions(ctx context.Context, pageSize uint32, fn func(*dsdv1.SessionSummary) error, shards ...uint32) error {
	tok := ""
	for {
		res, err := c.Sessions().ListSessions(ctx, &dsdv1.ListSessionsRequest{PageSize: pageSize, PageToken: tok, Shards: shards})
		if err != nil {
			return err
		}
		for _, s := range res.GetSessions() {
			if err := fn(s); err != nil {
				return err
			}
		}
		if tok = res.GetNextPageToken(); tok == "" {
			return nil
		}
	}
}

// AddSessionWatch is AddWatch for an entry tied to a session guard: dsd
// refuses it when the guard is stale and removes it when the session is
// taken over or deleted (the link then gets a SessionKick if this gateway
// epoch owned the connection).
func (l *Link) AddSessionWatch(session *dsdv1.SessionRef, filter string, shard int, startUs int64) (uint64, error) {
	w := &dsdv1.WatchEntry{TopicFilter: filter, StartTimeUs: startUs, Session: session}
	if shard >= 0 {
		s := uint32(shard)
		w.Shard = &s
	}
	return l.addEntry(func(id uint64) *dsdv1.GatewayLinkRequest {
		w.EntryId = id
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Watch{Watch: w}}
	})
}

// AddShardsWatch adds one Watch entry over several shards, each from its
// own start (starts maps a shard to its watermark), tied to session when
// it is not nil: one entry per subscription instead of one per shard.
func (l *Link) AddShardsWatch(session *dsdv1.SessionRef, filter string, starts map[int]int64) (uint64, error) {
	w := &dsdv1.WatchEntry{TopicFilter: filter, Session: session, Shards: WatchShards(starts)}
	return l.addEntry(func(id uint64) *dsdv1.GatewayLinkRequest {
		w.EntryId = id
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Watch{Watch: w}}
	})
}

// WatchShards builds WatchEntry.shards from a map of shard to start, in
// shard order.
func WatchShards(starts map[int]int64) []*dsdv1.WatchShard {
	out := make([]*dsdv1.WatchShard, 0, len(starts))
	for shard, start := range starts {
		out = append(out, &dsdv1.WatchShard{Shard: uint32(shard), StartTimeUs: start})
	}
	slices.SortFunc(out, func(a, b *dsdv1.WatchShard) int { return cmp.Compare(a.Shard, b.Shard) })
	return out
}

// AddSessionRead is AddReadBatch for an entry tied to a session guard.
func (l *Link) AddSessionRead(session *dsdv1.SessionRef, iterator []byte, window, maxBatchMessages uint32) (uint64, error) {
	return l.addEntry(func(id uint64) *dsdv1.GatewayLinkRequest {
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{
			EntryId: id, Iterator: iterator, Window: window, MaxBatchMessages: maxBatchMessages, Session: session,
		}}}
	})
}

// AddSharedRead adds a member's Read entry of a shared group's stream
// (ReadEntry.shared): its batches are the group's grants to the session.
func (l *Link) AddSharedRead(session *dsdv1.SessionRef, iterator []byte, window, maxBatchMessages uint32, shared *dsdv1.SharedRead) (uint64, error) {
	return l.addEntry(func(id uint64) *dsdv1.GatewayLinkRequest {
		return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{
			EntryId: id, Iterator: iterator, Window: window, MaxBatchMessages: maxBatchMessages, Session: session, Shared: shared,
		}}}
	})
}
