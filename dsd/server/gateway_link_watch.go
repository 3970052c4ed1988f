package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// addWatch starts a Watch entry: its worker announces the filter's streams.
func (l *link) addWatch(w *dsdv1.WatchEntry) {
	shard := -1
	if w.Shard != nil {
		if int(w.GetShard()) >= l.s.db.NShards() {
			l.refuse(w.GetEntryId(), fmt.Errorf("%w: watch entry %d: shard %d does not exist (n_shards = %d)", errInvalidRequest, w.GetEntryId(), w.GetShard(), l.s.db.NShards()))
			return
		}
		shard = int(w.GetShard())
	}
	filter, start := w.GetTopicFilter(), w.GetStartTimeUs()
	l.start(w.GetEntryId(), w.GetSession(), func(ctx context.Context, e *linkEntry) {
		l.runWatch(ctx, e, filter, shard, start)
	})
}

// streamKey identifies a stream among those announced.
type streamKey struct {
	shard  int
	gen    uint64
	static string
}

// runWatch is a Watch entry's worker. It lists the filter's streams when it
// starts (the initial announcement, maybe empty), then each time the
// shard's (or any shard's) streams changed or RenewStreamsInterval passed,
// and announces the streams it has not announced yet. It ends when ctx
// ends or on an error.
func (l *link) runWatch(ctx context.Context, e *linkEntry, filter string, shard int, start int64) {
	db := l.s.db
	renew := time.NewTimer(l.s.opts.RenewStreamsInterval)
	defer renew.Stop()
	// announced holds the streams of the last listing that were announced.
	// Streams leave a listing only when their generation is dropped, and
	// generation ids are never reused, so the set stays bounded.
	announced := make(map[streamKey]struct{})
	initial := true
	for {
		changed := db.StreamsChanged(shard)
		streams, err := db.GetStreams(filter, start, shard)
		if rerr := db.Ready(); errors.Is(rerr, storage.ErrClosed) {
			err = rerr // Close woke us: stop rather than spin
		}
		if err != nil {
			if ctx.Err() == nil {
				l.endEntry(e, err)
			}
			return
		}
		var fresh []*dsdv1.AnnouncedStream
		listed := make(map[streamKey]struct{}, len(streams))
		for _, st := range streams {
			k := streamKey{st.Shard, st.Generation, string(st.StaticIndex)}
			if _, ok := announced[k]; ok {
				listed[k] = struct{}{}
				continue
			}
			it, err := db.MakeIterator(st, filter, start)
			if errors.Is(err, storage.ErrGenerationDropped) {
				continue // dropped since the listing: nothing to announce
			}
			if err != nil {
				if ctx.Err() == nil {
					l.endEntry(e, err)
				}
				return
			}
			listed[k] = struct{}{}
			fresh = append(fresh, &dsdv1.AnnouncedStream{Stream: streamToProto(st), Iterator: it})
		}
		announced = listed
		if initial || len(fresh) > 0 {
			resp := &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{
				EntryId: e.id, Streams: fresh, Initial: initial,
			}}}
			if !l.send(ctx, resp) {
				return
			}
			initial = false
		}
		renew.Reset(l.s.opts.RenewStreamsInterval)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-renew.C:
		}
	}
}
