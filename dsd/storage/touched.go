package storage

import (
	"container/heap"
	"sync"
	"sync/atomic"

	"github.com/stratamq/strata/lts"
)

// Touched-stream feed.
//
// ReadableClockChanged wakes every reader of a shard on every commit, so a
// reader of a quiet stream pays one Next per commit of its shard. The feed
// says which streams a commit made readable further, so that a pusher
// (dsd's GatewayLink) wakes only their readers.
//
// Rule, the same as Next's (iterator.go "to"): a message at ts of a stream
// without varying levels is readable once R >= ts; of a stream with varying
// levels in the current generation, once R reaches the end of ts's epoch
// (readableFrom). So a commit's touched streams go out at once or wait in
// the shard's pending heap until a later commit or idle tick moves R past
// their epoch; then they go out with that commit's event. A message of a
// generation that is no longer current is readable as soon as it is
// committed: the event of the commit that added the generation says
// GenerationsChanged, which covers it. readableFrom must change with
// Next's rule (wildcard_optimized_v2, where everything <= R is readable,
// returns ts).
//
// Cost on the write path: apply records each (generation, static) it wrote
// once per batch; the syncer builds one event per batch when someone
// subscribed, and keeps the pending heap either way (its size is the
// number of varying-level streams written in the current epoch).

// CommitEvent is what one committed batch of a shard means for readers.
// It is delivered after the batch's fsync, after the readable clock moved.
type CommitEvent struct {
	// Shard is the shard of the batch; -1 with Closed.
	Shard int
	// Touched are streams with messages that became readable with this
	// batch (its own, or earlier ones whose epoch it completed). A stream
	// may be listed twice; its generation may have been dropped since.
	Touched []Stream
	// StreamsChanged is StreamsChanged's event: a structure was learned or
	// a generation added or dropped.
	StreamsChanged bool
	// GenerationsChanged: a generation was added or dropped. Every stream
	// of the shard may be readable further (a generation that stopped
	// being current reads to its end) or gone.
	GenerationsChanged bool
	// Closed: the DB closed (or stopped on a failure); no event follows.
	Closed bool
}

// SubscribeCommits calls fn with the CommitEvent of every committed batch
// of every shard, in each shard's commit order, until cancel is called.
// fn runs on the engine's syncer: it must not block, nor call into the
// write path; it may be called once more after cancel returned. Each
// subscriber costs one call per committed batch.
func (db *DB) SubscribeCommits(fn func(CommitEvent)) (cancel func()) {
	return db.notify.feed.subscribe(fn)
}

// readableFrom is the smallest readable clock at which a message of
// learned topic l stored at ts in generation g is readable (Next's rule).
func readableFrom(g *genState, l lts.Learned, ts int64) int64 {
	bits := g.layout.cfg.EpochBits
	if g.layout.timeFirst() || len(l.Varying) == 0 || bits >= 64 {
		return ts
	}
	return int64(g.layout.keys.EpochStart(uint64(ts)) + 1<<uint(bits))
}

// touchKey names a stream of one shard.
type touchKey struct {
	gen    uint64
	static lts.StateID
}

// touched is one stream written by a batch.
type touched struct {
	gen    uint64
	static []byte
	// readableAt: the stream's last write in the batch is readable once
	// the readable clock reaches it.
	readableAt int64
}

// touchSet collects the streams a batch wrote, once each.
type touchSet struct {
	list []touched
	idx  map[touchKey]int
}

// touch records that apply stored a message of l at ts in generation g.
func (res *applyResult) touch(g *genState, l lts.Learned, ts int64) {
	t := &res.touched
	k := touchKey{g.meta.Id, l.Static}
	at := readableFrom(g, l, ts)
	if i, ok := t.idx[k]; ok {
		t.list[i].readableAt = max(t.list[i].readableAt, at)
		return
	}
	if t.idx == nil {
		t.idx = make(map[touchKey]int)
	}
	t.idx[k] = len(t.list)
	t.list = append(t.list, touched{gen: k.gen, static: g.layout.staticBytes(l.Static), readableAt: at})
}

// pendingTouch is a stream waiting for the readable clock to reach due.
type pendingTouch struct {
	due    int64
	gen    uint64
	static string
}

type pendingHeap []pendingTouch

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h pendingHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)        { *h = append(*h, x.(pendingTouch)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// shardPending holds a shard's touched streams not yet readable: due has
// the latest due per stream, the heap one item per (stream, due).
type shardPending struct {
	heap pendingHeap
	due  map[pendingKey]int64
}

type pendingKey struct {
	gen    uint64
	static string
}

// commitFeed delivers CommitEvents to subscribers.
type commitFeed struct {
	mu      sync.Mutex
	nextID  int
	subs    map[int]func(CommitEvent)
	closed  bool
	pending []shardPending // per shard; guarded by mu
	// snapshot is subs as a slice, read without mu by the syncer.
	snapshot atomic.Pointer[[]func(CommitEvent)]
}

func newCommitFeed(nShards int) *commitFeed {
	return &commitFeed{subs: make(map[int]func(CommitEvent)), pending: make([]shardPending, nShards)}
}

func (f *commitFeed) subscribe(fn func(CommitEvent)) func() {
	f.mu.Lock()
	id := f.nextID
	f.nextID++
	f.subs[id] = fn
	closed := f.closed
	f.publishLocked()
	f.mu.Unlock()
	if closed {
		fn(CommitEvent{Shard: -1, Closed: true})
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, id)
			f.publishLocked()
			f.mu.Unlock()
		})
	}
}

func (f *commitFeed) publishLocked() {
	s := make([]func(CommitEvent), 0, len(f.subs))
	for _, fn := range f.subs {
		s = append(s, fn)
	}
	f.snapshot.Store(&s)
}

// committed runs on the syncer after batch b of shard was committed and
// the shard's readable clock is R.
func (f *commitFeed) committed(shard int, R int64, b *inflightBatch) {
	subs := f.snapshot.Load()
	listen := subs != nil && len(*subs) > 0
	ev := CommitEvent{Shard: shard, StreamsChanged: b.streamsChanged, GenerationsChanged: b.generationsChanged}
	f.mu.Lock()
	p := &f.pending[shard]
	for _, t := range b.touched.list {
		if t.readableAt <= R {
			if listen {
				ev.Touched = append(ev.Touched, Stream{Shard: shard, Generation: t.gen, StaticIndex: t.static})
			}
			continue
		}
		k := pendingKey{t.gen, string(t.static)}
		if d, ok := p.due[k]; ok && d >= t.readableAt {
			continue
		}
		if p.due == nil {
			p.due = make(map[pendingKey]int64)
		}
		p.due[k] = t.readableAt
		heap.Push(&p.heap, pendingTouch{due: t.readableAt, gen: t.gen, static: k.static})
	}
	for len(p.heap) > 0 && p.heap[0].due <= R {
		t := heap.Pop(&p.heap).(pendingTouch)
		k := pendingKey{t.gen, t.static}
		if p.due[k] != t.due {
			continue // a later write of the stream is due later
		}
		delete(p.due, k)
		if listen {
			ev.Touched = append(ev.Touched, Stream{Shard: shard, Generation: t.gen, StaticIndex: []byte(t.static)})
		}
	}
	f.mu.Unlock()
	if !listen || (len(ev.Touched) == 0 && !ev.StreamsChanged && !ev.GenerationsChanged) {
		return
	}
	for _, fn := range *subs {
		fn(ev)
	}
}

// close tells every subscriber, now and later, that the DB closed.
func (f *commitFeed) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	subs := f.snapshot.Load()
	f.mu.Unlock()
	if subs == nil {
		return
	}
	for _, fn := range *subs {
		fn(CommitEvent{Shard: -1, Closed: true})
	}
}
