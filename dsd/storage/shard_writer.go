package storage

import (
	"sync"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// reqKind is the kind of a request to a shard writer.
type reqKind int

const (
	reqStore reqKind = iota
	reqAddGeneration
	reqDropGeneration
	// reqTick asks the writer to run its idle-tick and retention check now
	// (tests use it instead of waiting for IdleTickInterval).
	reqTick
	// reqSession is a session command (session.go), built by mkCmd.
	reqSession
	// reqApply is a committed entry of a replicated shard (replication.go).
	reqApply
	// reqInstall installs a shard snapshot (snapshot.go).
	reqInstall
)

// request is a Store or an admin command waiting in a shard's buffer.
type request struct {
	kind   reqKind
	store  *storeReq
	dropID uint64
	// entry is a reqApply's entry.
	entry *appliedEntry
	// install is a reqInstall's work, run on the writer once its commits
	// in flight are done.
	install func() error
	// mkCmd builds a reqSession's command with the writer's clock reading.
	mkCmd func(nowUs int64) command
	// items and bytes size a Store for the buffer limits.
	items, bytes int
	enqueued     time.Time
	// done receives exactly one reply. Buffered, so the writer and the
	// syncer never block on a caller that gave up.
	done chan reply
	// then, when set instead of done, is called with the reply on the
	// writer's or the syncer's goroutine (StoreAsync): it must not block.
	then func(reply)
}

// finish hands the request its one reply.
func (r *request) finish(rep reply) {
	if r.then != nil {
		r.then(rep)
		return
	}
	r.done <- rep
}

type reply struct {
	out  storeOutcome
	gen  *storagev1.Generation
	sess sessionOutcome
	err  error
}

// inflightBatch is one applied command of a shard on its way through the
// group committer (committer.go): its writes, and what to do once they are
// committed.
type inflightBatch struct {
	shard   *shard
	writes  []write
	reqs    []*request
	replies []reply
	lastTs  int64
	// logged: the writes are a replicated shard's applied entry, already
	// in a synced raft log (the round needs no fsync for them).
	logged  bool
	compact *keyRange
	started time.Time
	nmsgs   int
	nbytes  int
	// streamsChanged is applyResult.streamsChanged, notified after the commit.
	streamsChanged bool
	// generationsChanged: the command added or dropped a generation;
	// touched are applyResult.touched. Both go to the commit feed
	// (touched.go).
	generationsChanged bool
	touched            touchSet
	// revoked are applyResult.revoked, announced after the commit.
	revoked []GuardRevoked
	// shared and sharedAcks are applyResult's, for the groups after the
	// commit.
	shared     []SharedDown
	sharedAcks []sharedAck
	// sharedReturnedTo is applyResult's: woken after the commit of an
	// applied entry.
	sharedReturnedTo []string
}

func (s *shard) start(writers *sync.WaitGroup) {
	writers.Add(1)
	go func() {
		defer writers.Done()
		s.runWriter()
	}()
}

// runWriter is the shard's single writer: it owns the buffer and the shard
// state, applies commands in order and hands applied commands to the
// engine's group committer.
func (s *shard) runWriter() {
	opts := &s.db.opts
	var (
		pending     []*request
		pendingMsgs int
		pendingB    int
		inflight    int
		// flushTimer fires when the oldest pending request has waited
		// FlushInterval while commits are in flight; one timer for the
		// writer's life, armed for flushDue (zero: disarmed).
		flushTimer  = time.NewTimer(time.Hour)
		flushDue    time.Time
		timerC      <-chan time.Time
		tickWaiters []*request
		// willQueued: a will-firing request is pending (not yet flushed);
		// expiryQueued: a retained expiry request.
		willQueued, expiryQueued bool
	)
	flushTimer.Stop()
	// queueWills appends a request that fires the due wills, unless one is
	// pending already. Nobody waits for its reply (done is buffered).
	queueWills := func() {
		if willQueued || !s.willsDue() {
			return
		}
		willQueued = true
		pending = append(pending, &request{kind: reqSession, enqueued: time.Now(), done: make(chan reply, 1),
			mkCmd: func(now int64) command {
				willQueued = false // flush runs on this goroutine
				return cmdFireWills{nowUs: now}
			}})
	}
	// queueExpiry appends a request that turns the expired retained
	// messages into tombstones, the same way; on a replicated shard only
	// its leader does.
	queueExpiry := func() {
		if expiryQueued || s.ledElsewhere() || !s.retainedDue() {
			return
		}
		expiryQueued = true
		pending = append(pending, &request{kind: reqSession, enqueued: time.Now(), done: make(chan reply, 1),
			mkCmd: func(now int64) command {
				expiryQueued = false
				return cmdRetainedExpire{nowUs: now}
			}})
	}
	ticker := time.NewTicker(opts.IdleTickInterval)
	defer ticker.Stop()
	sessionGC := time.NewTicker(opts.SessionGCInterval)
	defer sessionGC.Stop()
	// busy is what gates a flush: the commits in flight, or on a
	// replicated shard this site's proposals not yet applied (the
	// commits of applied entries follow the log, not the writer).
	busy := func() int {
		if s.repl.r.Load() != nil {
			return s.proposals()
		}
		return inflight
	}
	for {
		// Flush while the rules allow: a free shard flushes at once; with
		// commits in flight, a full buffer or an item older than
		// FlushInterval flushes too (Pebble merges the fsyncs).
		for len(pending) > 0 && busy() < opts.MaxInflightCommits {
			full := pendingMsgs >= opts.BufferMaxItems || pendingB >= opts.BufferMaxBytes
			old := time.Since(pending[0].enqueued) >= opts.FlushInterval
			if busy() > 0 && !full && !old && pending[0].kind == reqStore {
				break
			}
			var n int
			n, pendingMsgs, pendingB = s.takeFlush(pending, pendingMsgs, pendingB)
			f := s.flush(pending[:n])
			pending = append(pending[:0:0], pending[n:]...)
			if f != nil {
				s.db.committer.in <- f
				inflight++
			}
		}
		if len(tickWaiters) > 0 && len(pending) == 0 && busy() == 0 && inflight == 0 {
			// Answered once the idle work is committed.
			if f := s.idleWork(tickWaiters); f != nil {
				s.db.committer.in <- f
				inflight++
			}
			tickWaiters = nil
		}
		if n := busy(); len(pending) > 0 && n > 0 && n < opts.MaxInflightCommits {
			if due := pending[0].enqueued.Add(opts.FlushInterval); !due.Equal(flushDue) {
				flushDue = due
				flushTimer.Reset(max(time.Until(due), 0))
				timerC = flushTimer.C
			}
		} else if !flushDue.IsZero() {
			flushTimer.Stop()
			flushDue, timerC = time.Time{}, nil
		}
		select {
		case r := <-s.reqCh:
			if r.kind == reqApply {
				// A committed entry: its batch joins the commits in
				// flight, at most MaxInflightCommits (doneCh's size).
				// Commits in flight always finish (Close included).
				for inflight >= opts.MaxInflightCommits {
					<-s.doneCh
					inflight--
				}
				s.db.committer.in <- s.applyEntry(r.entry)
				inflight++
				continue
			}
			if r.kind == reqInstall {
				for inflight > 0 {
					<-s.doneCh
					inflight--
				}
				r.finish(reply{err: r.install()})
				continue
			}
			if r.kind == reqTick {
				// Answered once the shard is idle and its idle work ran
				// (due wills first).
				queueWills()
				queueExpiry()
				tickWaiters = append(tickWaiters, r)
				continue
			}
			pending = append(pending, r)
			pendingMsgs += r.items
			pendingB += r.bytes
		case <-s.doneCh:
			inflight--
		case <-timerC:
			flushDue, timerC = time.Time{}, nil
		case <-s.repl.wake:
		case <-sessionGC.C:
			// Nobody waits for the sweep's reply (done is buffered).
			pending = append(pending, &request{kind: reqSession, enqueued: time.Now(), done: make(chan reply, 1),
				mkCmd: func(now int64) command { return cmdSessionGC{nowUs: now} }})
		case <-ticker.C:
			queueWills()
			queueExpiry()
			if len(pending) == 0 && inflight == 0 && busy() == 0 {
				if f := s.idleWork(nil); f != nil {
					s.db.committer.in <- f
					inflight++
				}
			}
		case <-s.db.ctx.Done():
			flushTimer.Stop()
			for _, r := range pending {
				r.finish(reply{err: ErrClosed})
			}
			for _, r := range tickWaiters {
				r.finish(reply{err: ErrClosed})
			}
			// The writer registers every proposal: none comes after this.
			s.failProposals(ErrClosed)
			return
		}
	}
}

// takeFlush returns how many pending requests the next flush takes: one
// admin command alone, or a run of Stores up to the buffer limits (at least
// one; a Store is never split).
func (s *shard) takeFlush(pending []*request, msgs, bytes int) (n, msgsLeft, bytesLeft int) {
	if pending[0].kind != reqStore {
		return 1, msgs - pending[0].items, bytes - pending[0].bytes
	}
	var m, b int
	maxBytes := s.db.opts.BufferMaxBytes
	if s.repl.r.Load() != nil {
		maxBytes = min(maxBytes, maxEntryBytes)
	}
	for n < len(pending) && pending[n].kind == reqStore {
		r := pending[n]
		if n > 0 && (m+r.items > s.db.opts.BufferMaxItems || b+r.bytes > maxBytes) {
			break
		}
		m += r.items
		b += r.bytes
		n++
	}
	return n, msgs - m, bytes - b
}

// flush applies one command built from reqs and hands the batch to the
// syncer. It returns nil when nothing went to the syncer (every request was
// answered here).
func (s *shard) flush(reqs []*request) *inflightBatch {
	now := s.db.opts.Now().UnixMicro()
	var cmd command
	switch reqs[0].kind {
	case reqStore:
		c := cmdBatch{nowUs: now, stores: make([]*storeReq, len(reqs))}
		for i, r := range reqs {
			c.stores[i] = r.store
		}
		cmd = c
	case reqAddGeneration:
		cmd = cmdAddGeneration{nowUs: now, layout: s.db.opts.Layout}
	case reqDropGeneration:
		cmd = cmdDropGeneration{nowUs: now, id: reqs[0].dropID}
	case reqSession:
		cmd = reqs[0].mkCmd(now)
	}
	if ref := s.repl.r.Load(); ref != nil {
		s.propose(ref.r, cmd, reqs)
		return nil
	}
	f := s.applyAndCommit(cmd, reqs)
	if f != nil && (reqs[0].kind == reqAddGeneration || reqs[0].kind == reqDropGeneration) {
		f.generationsChanged = true
	}
	return f
}

// applyAndCommit runs apply under mu and returns the applied command for
// the group committer (nil when every request was answered here).
func (s *shard) applyAndCommit(cmd command, reqs []*request) *inflightBatch {
	if err := s.db.failErr(); err != nil {
		for _, r := range reqs {
			r.finish(reply{err: err})
		}
		return nil
	}
	start := time.Now()
	s.mu.Lock()
	res := apply(s.mu.st, cmd)
	lastTs := s.mu.st.lastTs
	s.mu.Unlock()
	s.db.tail.applied(s.id, &res)
	if res.err != nil {
		for _, r := range reqs {
			r.finish(reply{err: res.err})
		}
		return nil
	}
	f := &inflightBatch{shard: s, writes: res.writes, reqs: reqs, replies: make([]reply, len(reqs)), lastTs: lastTs, compact: res.compact,
		started: start, nmsgs: res.messages, nbytes: res.bytes, streamsChanged: res.streamsChanged, revoked: res.revoked,
		touched: res.touched, shared: res.shared, sharedAcks: res.sharedAcks, sharedReturnedTo: res.sharedReturnedTo}
	for _, d := range res.willsDropped {
		s.db.log.Warn("will dropped: the layout refused its topic", "shard", s.id, "will", d)
	}
	for i := range reqs {
		if res.outcomes != nil {
			f.replies[i] = reply{out: res.outcomes[i], err: res.outcomes[i].err}
		} else {
			f.replies[i] = reply{gen: res.gen, sess: res.sess}
		}
	}
	return f
}

// finish completes an applied command once the committer's round that
// carried it is fsynced (err nil) or failed: it advances the readable clock,
// wakes readers and answers the requests. It runs on the committer's
// syncer, in the shard's order.
func (s *shard) finish(f *inflightBatch, err error) {
	if err != nil {
		s.stats.failedBatches.Add(1)
		for _, r := range f.reqs {
			r.finish(reply{err: err})
		}
	} else {
		advanced := f.lastTs > s.readable.Load()
		if advanced {
			s.readable.Store(f.lastTs)
		}
		s.db.notify.committed(s.id, advanced, f.streamsChanged)
		s.db.notify.feed.committed(s.id, s.readable.Load(), f)
		s.db.sessionEvents.fire(f.revoked)
		// The shared groups' follow-ups are commands of other shards: on
		// a replicated shard its leader sends them, not every replica.
		if len(f.shared)+len(f.sharedAcks) > 0 && !s.ledElsewhere() {
			s.db.wg.Add(1)
			go s.db.sharedAfterCommit(f.sharedAcks, f.shared)
		}
		// Grants went back to a group of a replicated shard: every
		// replica wakes its readers of it, wherever the group is led (off
		// the syncer: a reader holds its group stream's lock while it
		// grants, which may wait for another site).
		if wake := s.db.sharedWake.Load(); wake != nil && f.logged && len(f.sharedReturnedTo) > 0 {
			filters := f.sharedReturnedTo
			s.db.later(func() {
				for _, filter := range filters {
					(*wake)(filter)
				}
			})
		}
		s.stats.batches.Add(1)
		s.stats.messages.Add(int64(f.nmsgs))
		s.stats.bytes.Add(int64(f.nbytes))
		took := time.Since(f.started)
		s.stats.flushTimeUs.Add(took.Microseconds())
		s.stats.flushTime.observe(took)
		for i, r := range f.reqs {
			r.finish(f.replies[i])
		}
		if f.compact != nil {
			// A generation was dropped: so were the shared groups'
			// streams of it.
			s.db.scheduleCompaction(*f.compact)
			s.db.forgetGoneSharedLater()
		}
	}
	s.doneCh <- struct{}{}
}
