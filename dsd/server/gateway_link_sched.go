package server

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/stratamq/strata/dsd/storage"
)

// The entry scheduler of a link.
//
// An entry is a struct in the scheduler's indexes, not a goroutine. A fixed
// pool of workers (GatewayLinkOptions.Workers) takes runnable entries from
// one FIFO queue and gives each one step: one Next and at most one pushed
// batch for a Read entry, one listing for a Watch entry. An entry that may
// have more to push goes back to the tail, so a busy entry never starves a
// quiet one (round-robin). An entry becomes runnable when
//
//   - it is added;
//   - an ack freed window in it (Read);
//   - a commit made its stream readable further (storage's commit feed,
//     DB.SubscribeCommits: only readers of the touched streams wake, and a
//     stream with varying levels is announced when its epoch completes);
//   - its shard added or dropped a generation (Read: its generation may have
//     ended; Watch) or learned a structure (Watch);
//   - the safety net passed: every IdlePollInterval every Read entry, every
//     RenewStreamsInterval every Watch entry (one ticker per link);
//   - the DB closed (each entry then ends with UNAVAILABLE).
//
// An entry woken while a worker runs it is marked dirty and queued again
// when the step ends, so a commit that lands during its Next is never
// missed. Workers send through the link's one send loop: when the outbound
// queue is full they block, and the link stops reading (no unbounded
// buffering for a slow gateway).

// entryState is where an entry is in the scheduler.
type entryState uint8

const (
	entryIdle    entryState = iota // in the indexes only
	entryQueued                    // in the run queue
	entryRunning                   // a worker runs its step
	entryEnded                     // removed; never queued again
)

// scheduler holds a link's entries that have work. Everything in it is
// guarded by mu, which is taken after link.mu, never before, and held for
// map and queue updates only (never across Next or a send).
type scheduler struct {
	mu sync.Mutex
	// queue holds runnable entries from head on.
	queue []*linkEntry
	head  int
	// ready has a token while the queue is not empty.
	ready chan struct{}
	// reads indexes the live Read entries by stream: the head of an
	// intrusive list (linkEntry.prev/next).
	reads map[streamKey]*linkEntry
	// watches lists the live Watch entries (intrusive list).
	watches *linkEntry
	// runnable mirrors the queue's length into the service's gauge.
	m *metrics
	// wakes counts the wake-ups of entries; linkEntry.wokeAt is its value
	// when the entry was last queued (shareRead).
	wakes uint64
	// budgets are the shared group members' windows (shared_read.go).
	budgets map[budgetKey]*memberBudget
}

func newScheduler(m *metrics) *scheduler {
	return &scheduler{ready: make(chan struct{}, 1), reads: make(map[streamKey]*linkEntry), m: m}
}

// add indexes a new entry and queues it.
func (s *scheduler) add(e *linkEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.read != nil {
		k := e.read.stream
		e.next = s.reads[k]
		if e.next != nil {
			e.next.prev = e
		}
		s.reads[k] = e
	} else {
		e.next = s.watches
		if e.next != nil {
			e.next.prev = e
		}
		s.watches = e
	}
	s.wakeLocked(e)
}

// end takes e out of the scheduler; false when it had ended already.
func (s *scheduler) end(e *linkEntry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.state == entryEnded {
		return false
	}
	e.state = entryEnded // a queued copy is skipped by next
	if e.read != nil && e.read.shared != nil {
		s.leaveBudgetLocked(e)
	}
	switch {
	case e.prev != nil:
		e.prev.next = e.next
	case e.read != nil:
		if e.next != nil {
			s.reads[e.read.stream] = e.next
		} else {
			delete(s.reads, e.read.stream)
		}
	default:
		s.watches = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	e.prev, e.next = nil, nil
	return true
}

// wake makes e runnable unless it ended.
func (s *scheduler) wake(e *linkEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.state != entryEnded {
		s.wakeLocked(e)
	}
}

// wakeLocked makes e runnable.
func (s *scheduler) wakeLocked(e *linkEntry) {
	switch e.state {
	case entryIdle:
		s.wakes++
		e.wokeAt = s.wakes
		e.state = entryQueued
		s.queue = append(s.queue, e)
		s.m.linkRunnable.Inc()
		select {
		case s.ready <- struct{}{}:
		default:
		}
	case entryRunning:
		e.dirty = true
	}
}

// claimAt marks running, and charges n messages to the window of, every
// other Read entry of e's stream that is idle or queued at position pos
// with room and batch size for n: e's read is their next batch too. An
// entry queued by a wake-up after wakes (e's read may have missed what that
// wake-up announced) is marked dirty, so done queues it again.
func (s *scheduler) claimAt(e *linkEntry, pos string, n int, wakes uint64) []*linkEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*linkEntry
	for o := s.reads[e.read.stream]; o != nil; o = o.next {
		// The state first: a running entry's position belongs to its worker.
		if o == e || o.state != entryIdle && o.state != entryQueued {
			continue
		}
		if r := o.read; r.pos != pos || r.window-r.inflight < n || r.batch < n {
			continue
		}
		r := o.read
		o.dirty = o.state == entryQueued && o.wokeAt > wakes
		o.state = entryRunning // a queued copy is skipped by next
		r.unacked = append(r.unacked, unackedBatch{seq: r.seq + 1, n: n})
		r.inflight += n
		out = append(out, o)
	}
	return out
}

// next blocks until an entry is runnable and marks it running; nil when
// ctx ended.
func (s *scheduler) next(ctx context.Context) *linkEntry {
	for {
		s.mu.Lock()
		for s.head < len(s.queue) {
			e := s.queue[s.head]
			s.queue[s.head] = nil
			s.head++
			s.m.linkRunnable.Dec()
			if e.state != entryQueued {
				continue // ended while queued
			}
			e.state, e.dirty = entryRunning, false
			if s.head < len(s.queue) {
				select { // more work: wake another worker
				case s.ready <- struct{}{}:
				default:
				}
			}
			s.compactLocked()
			s.mu.Unlock()
			return e
		}
		s.compactLocked()
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-s.ready:
		}
	}
}

// compactLocked frees the consumed front of the queue.
func (s *scheduler) compactLocked() {
	switch {
	case s.head == len(s.queue):
		s.queue, s.head = s.queue[:0], 0
	case s.head > 1024 && s.head > len(s.queue)/2:
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
}

// done ends e's step: again (it may have more) or a wake-up during the
// step queues it at the tail; otherwise it is idle.
func (s *scheduler) done(e *linkEntry, again bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.state != entryRunning {
		return // ended during the step
	}
	e.state = entryIdle
	if again || e.dirty {
		e.dirty = false
		s.wakeLocked(e)
	}
}

// commit is the link's storage.SubscribeCommits callback: it runs on the
// engine's syncer and only queues entries.
func (s *scheduler) commit(ev storage.CommitEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ev.Closed:
		s.wakeAllLocked(true, true)
		return
	case ev.GenerationsChanged:
		for k, e := range s.reads {
			if k.shard == ev.Shard {
				s.wakeListLocked(e)
			}
		}
	default:
		for _, st := range ev.Touched {
			s.wakeListLocked(s.reads[streamKey{st.Shard, st.Generation, string(st.StaticIndex)}])
		}
	}
	if ev.StreamsChanged || ev.GenerationsChanged {
		for e := s.watches; e != nil; e = e.next {
			if e.watch.covers(ev.Shard) {
				e.watch.markLocked(ev.Shard)
				s.wakeLocked(e)
			}
		}
	}
}

func (s *scheduler) wakeListLocked(e *linkEntry) {
	for ; e != nil; e = e.next {
		s.wakeLocked(e)
	}
}

func (s *scheduler) wakeAllLocked(reads, watches bool) {
	if reads {
		for _, e := range s.reads {
			s.wakeListLocked(e)
		}
	}
	if watches {
		for e := s.watches; e != nil; e = e.next {
			e.watch.markLocked(-1)
			s.wakeLocked(e)
		}
	}
}

// runScheduler runs the link's workers and its safety-net ticker in the
// link's errgroup; they end with the link.
func (l *link) runScheduler() {
	for range l.s.opts.Workers {
		l.g.Go(func() error {
			for {
				e := l.sched.next(l.ctx)
				if e == nil {
					return nil
				}
				l.sched.done(e, l.step(e))
			}
		})
	}
	l.g.Go(func() error {
		poll := time.NewTicker(l.s.opts.IdlePollInterval)
		defer poll.Stop()
		renew := time.NewTicker(l.s.opts.RenewStreamsInterval)
		defer renew.Stop()
		for {
			select {
			case <-l.ctx.Done():
				return nil
			case <-poll.C:
				l.sched.mu.Lock()
				l.sched.wakeAllLocked(true, false)
				l.sched.mu.Unlock()
			case <-renew.C:
				l.sched.mu.Lock()
				l.sched.wakeAllLocked(false, true)
				l.sched.mu.Unlock()
			}
		}
	})
}

// step runs one step of e; true when e may have more to do at once. It is
// the panic boundary of an entry: the entry ends with INTERNAL (the stack
// is logged and counted), the link goes on.
func (l *link) step(e *linkEntry) (again bool) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		again = false
		l.s.metrics.panics.WithLabelValues("GatewayLink/entry").Inc()
		l.s.log.Error("panic in a gateway link entry; the entry ends with INTERNAL", "gateway", l.gatewayID, "entry", e.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		if l.ctx.Err() == nil {
			l.endEntry(e, fmt.Errorf("%w: entry %d: %v", errPanic, e.id, r))
		}
	}()
	if e.read != nil {
		return l.stepRead(e)
	}
	return l.stepWatch(e)
}

// close drops the queue when the link ended (its workers have stopped).
func (s *scheduler) close() {
	s.mu.Lock()
	s.m.linkRunnable.Sub(float64(len(s.queue) - s.head))
	s.queue, s.head = nil, 0
	s.mu.Unlock()
}
