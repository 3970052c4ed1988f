package server

import (
	"errors"
	"fmt"
	"slices"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// watchEntry is the state of a Watch entry, owned by the worker running
// its step.
type watchEntry struct {
	filter string
	// starts are the start times of the watched shards: starts[i] is shard
	// ids[i]'s, or shard i's when ids is nil (every shard listed in order,
	// as the gateway's Watch lists them: an idle session holds its entry
	// for its life, and the starts alone are half the bytes of (shard,
	// start) pairs). ids {-1} watches every shard from starts[0].
	starts []int64
	ids    []int32
	// announced holds the streams of the last listing that were announced
	// (nil while there are none). Streams leave a listing only when their
	// generation is dropped, and generation ids are never reused, so the
	// set stays bounded.
	announced map[streamKey]struct{}
	initial   bool // the initial announcement is not sent yet

	// Guarded by link.sched.mu: the shards to list at the next step, all
	// of them or those whose streams changed since the last one.
	dirtyAll bool
	dirty    []int32
}

type watchShard struct {
	shard int32
	start int64
}

// covers reports whether the entry watches shard.
func (w *watchEntry) covers(shard int) bool {
	if w.ids == nil {
		return shard >= 0 && shard < len(w.starts)
	}
	for _, id := range w.ids {
		if id == -1 || int(id) == shard {
			return true
		}
	}
	return false
}

// shard returns the i-th watched shard with its start.
func (w *watchEntry) shard(i int) watchShard {
	id := int32(i)
	if w.ids != nil {
		id = w.ids[i]
	}
	return watchShard{id, w.starts[i]}
}

// shards lists the watched shards with their starts.
func (w *watchEntry) shards() []watchShard {
	out := make([]watchShard, len(w.starts))
	for i := range w.starts {
		out[i] = w.shard(i)
	}
	return out
}

// setShards keeps shards as starts, with ids only where the shards are not
// 0, 1, … in order.
func (w *watchEntry) setShards(shards []watchShard) {
	w.starts = make([]int64, len(shards))
	dense := true
	for i, s := range shards {
		w.starts[i] = s.start
		dense = dense && s.shard == int32(i)
	}
	if !dense {
		w.ids = make([]int32, len(shards))
		for i, s := range shards {
			w.ids[i] = s.shard
		}
	}
}

// markLocked notes that shard's streams changed (-1: every shard, or
// unknown); the caller holds link.sched.mu.
func (w *watchEntry) markLocked(shard int) {
	if w.dirtyAll || len(w.starts) == 1 {
		w.dirtyAll = true // one listing covers it
		return
	}
	if shard < 0 {
		w.dirtyAll, w.dirty = true, nil
		return
	}
	for _, s := range w.dirty {
		if int(s) == shard {
			return
		}
	}
	w.dirty = append(w.dirty, int32(shard))
}

// takeDirty returns the shards the step lists and clears the marks.
func (l *link) takeDirty(w *watchEntry) []watchShard {
	l.sched.mu.Lock()
	defer l.sched.mu.Unlock()
	all, dirty := w.dirtyAll, w.dirty
	w.dirtyAll, w.dirty = false, nil
	if all {
		return w.shards()
	}
	out := make([]watchShard, 0, len(dirty))
	for i := range w.starts {
		if s := w.shard(i); slices.Contains(dirty, s.shard) {
			out = append(out, s)
		}
	}
	return out
}

// addWatch adds a Watch entry: the scheduler announces the filter's
// streams in its shards.
func (l *link) addWatch(w *dsdv1.WatchEntry) {
	n := l.s.db.NShards()
	bad := func(format string, args ...any) {
		l.refuse(w.GetEntryId(), fmt.Errorf("%w: watch entry %d: "+format, append([]any{errInvalidRequest, w.GetEntryId()}, args...)...))
	}
	var shards []watchShard
	switch {
	case len(w.GetShards()) > 0:
		if len(w.GetShards()) > n {
			bad("%d shards listed, n_shards = %d", len(w.GetShards()), n)
			return
		}
		shards = make([]watchShard, 0, len(w.GetShards()))
		seen := make([]bool, n)
		for _, s := range w.GetShards() {
			if int(s.GetShard()) >= n {
				bad("shard %d does not exist (n_shards = %d)", s.GetShard(), n)
				return
			}
			if seen[s.GetShard()] {
				bad("shard %d listed twice", s.GetShard())
				return
			}
			seen[s.GetShard()] = true
			shards = append(shards, watchShard{int32(s.GetShard()), s.GetStartTimeUs()})
		}
	case w.Shard != nil:
		if int(w.GetShard()) >= n {
			bad("shard %d does not exist (n_shards = %d)", w.GetShard(), n)
			return
		}
		shards = []watchShard{{int32(w.GetShard()), w.GetStartTimeUs()}}
	default:
		shards = []watchShard{{-1, w.GetStartTimeUs()}}
	}
	we := &watchEntry{filter: w.GetTopicFilter(), initial: true, dirtyAll: true}
	we.setShards(shards)
	l.start(&linkEntry{id: w.GetEntryId(), session: w.GetSession(), watch: we})
}

// streamKey identifies a stream among those announced.
type streamKey struct {
	shard  int
	gen    uint64
	static string
}

// stepWatch is one step of a Watch entry: it lists the filter's streams in
// its shards whose streams changed (all of them at the first step and each
// RenewStreamsInterval) and announces the ones it has not announced yet.
// The first step's announcement is the initial one (maybe empty). An error
// ends the entry.
func (l *link) stepWatch(e *linkEntry) bool {
	w, db := e.watch, l.s.db
	fail := func(err error) bool {
		if l.ctx.Err() == nil {
			l.endEntry(e, err)
		}
		return false
	}
	var fresh []*dsdv1.AnnouncedStream
	var listed map[streamKey]struct{}
	shards := l.takeDirty(w)
	for _, ws := range shards {
		streams, err := db.GetStreams(w.filter, ws.start, int(ws.shard))
		if rerr := db.Ready(); errors.Is(rerr, storage.ErrClosed) {
			err = rerr // Close woke us: end rather than list a closing engine
		}
		if err != nil {
			return fail(err)
		}
		for _, st := range streams {
			k := streamKey{st.Shard, st.Generation, string(st.StaticIndex)}
			if listed == nil {
				listed = make(map[streamKey]struct{}, len(streams))
			}
			if _, ok := w.announced[k]; ok {
				listed[k] = struct{}{}
				continue
			}
			it, err := db.MakeIterator(st, w.filter, ws.start)
			if errors.Is(err, storage.ErrGenerationDropped) {
				continue // dropped since the listing: nothing to announce
			}
			if err != nil {
				return fail(err)
			}
			listed[k] = struct{}{}
			fresh = append(fresh, &dsdv1.AnnouncedStream{Stream: streamToProto(st), Iterator: it})
		}
	}
	l.s.metrics.linkListings.Inc()
	// The listed shards' streams replace their earlier ones.
	for k := range w.announced {
		if _, ok := listed[k]; !ok && lists(shards, k.shard) {
			delete(w.announced, k)
		}
	}
	for k := range listed {
		if w.announced == nil {
			w.announced = make(map[streamKey]struct{}, len(listed))
		}
		w.announced[k] = struct{}{}
	}
	if len(w.announced) == 0 {
		w.announced = nil
	}
	if w.initial || len(fresh) > 0 {
		resp := &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{
			EntryId: e.id, Streams: fresh, Initial: w.initial,
		}}}
		if !l.send(l.ctx, resp) {
			return false
		}
		w.initial = false
	}
	return false
}

// lists reports whether a listing of shards covers shard.
func lists(shards []watchShard, shard int) bool {
	for _, s := range shards {
		if s.shard == -1 || int(s.shard) == shard {
			return true
		}
	}
	return false
}
