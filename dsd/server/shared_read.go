package server

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Shared group reads.
//
// A shared Read entry (ReadEntry.shared) is one member's reader of one
// stream of a shared group ($share/{group}/{filter}). Every member has one
// per stream, possibly on different gateways (links). A step of such an
// entry hands the member the group's next batch of the stream as a grant:
// a waiting grant first (one a departed member left), else the messages
// after the group's cursor; the grant is durable (storage.GrantShared)
// before the batch is pushed, so every message goes to one member. The
// readers of one group stream take turns under sharedStream.mu, and the
// strategy decides whose turn it is:
//
//   - round_robin: the members take turns in the order of their client
//     ids: the turn is the first member after the last grant's that is
//     ready (e's, or one whose reader waits for a grant);
//   - random: a uniformly random member among those ready;
//   - sticky: the member of the last grant, while it has a reader;
//   - hash_clientid, hash_topic: each message goes to the member that the
//     hash of its publisher's client id or of its topic picks among the
//     members with a reader; a grant ends before the first message of
//     another member.
//
// A reader without window is not stepped, so a slow member only takes what
// its window allows and the others go on (but under the hash strategies,
// whose messages wait for their member, and sticky, which waits for its
// member while it is connected).

// Shared subscription strategies (mqtt.shared_subscription_strategy).
const (
	StrategyRoundRobin   = "round_robin"
	StrategyRandom       = "random"
	StrategySticky       = "sticky"
	StrategyHashClientID = "hash_clientid"
	StrategyHashTopic    = "hash_topic"
)

// ValidStrategy reports whether s names a strategy ("" is round_robin).
func ValidStrategy(s string) bool {
	switch s {
	case "", StrategyRoundRobin, StrategyRandom, StrategySticky, StrategyHashClientID, StrategyHashTopic:
		return true
	}
	return false
}

// sharedReader is the shared part of a Read entry.
type sharedReader struct {
	filter   string
	member   string
	guard    uint64
	qos      uint32
	strategy string
	ss       *sharedStream
	stream   storage.Stream
}

// memberBudget is a member's window over all its readers of one group on
// one link (a session's entries are on its gateway's link): without it a
// member with many streams would take as many windows, and the first member
// to connect would take a whole backlog. Guarded by the link's sched.mu.
type memberBudget struct {
	key      budgetKey
	inflight int
	entries  []*linkEntry
}

type budgetKey struct{ filter, member string }

// joinBudget adds a started shared entry to its member's budget.
func (s *scheduler) joinBudget(e *linkEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.state == entryEnded {
		return
	}
	sr := e.read.shared
	k := budgetKey{sr.filter, sr.member}
	if s.budgets == nil {
		s.budgets = make(map[budgetKey]*memberBudget)
	}
	b := s.budgets[k]
	if b == nil {
		b = &memberBudget{key: k}
		s.budgets[k] = b
	}
	b.entries = append(b.entries, e)
	b.inflight += e.read.inflight
	e.read.budget = b
}

// leaveBudgetLocked takes an ended entry's unacked messages out of its
// member's budget.
func (s *scheduler) leaveBudgetLocked(e *linkEntry) {
	b := e.read.budget
	if b == nil {
		return
	}
	e.read.budget = nil
	b.inflight -= e.read.inflight
	b.entries = slices.DeleteFunc(b.entries, func(o *linkEntry) bool { return o == e })
	if len(b.entries) == 0 {
		delete(s.budgets, b.key)
	}
}

type sharedStreamKey struct {
	filter string
	stream streamKey
}

// sharedGroups indexes the group streams that have readers.
type sharedGroups struct {
	db      *storage.DB
	mu      sync.Mutex
	streams map[sharedStreamKey]*sharedStream
	// held counts the entries of each group (all its streams): when the
	// last one leaves, the group may have no member left.
	held map[string]int
}

// wake makes every reader of a group runnable (storage.SetSharedWake:
// grants went back to it).
func (g *sharedGroups) wake(filter string) {
	// Not under g.mu: a turn holds ss.mu while its grant commits, and
	// leave (g.mu) runs on the commit path.
	g.mu.Lock()
	var streams []*sharedStream
	for k, ss := range g.streams {
		if k.filter == filter {
			streams = append(streams, ss)
		}
	}
	g.mu.Unlock()
	for _, ss := range streams {
		ss.mu.Lock()
		for _, o := range ss.readers {
			o.l.sched.wake(o)
		}
		ss.mu.Unlock()
	}
}

// live reports whether a group has a reader (storage.SetSharedLive).
func (g *sharedGroups) live(filter string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held[filter] > 0
}

// sharedStream is one stream of one group with its readers. mu is held
// for a whole turn (read, grant, commit), so turns of one group stream are
// serial; it is taken before any link's scheduler lock, never after.
type sharedStream struct {
	key sharedStreamKey
	mu  sync.Mutex
	// readers are the live shared entries of the stream (all links).
	readers []*linkEntry
	// waiting are readers that found nothing, or yielded their turn.
	waiting map[*linkEntry]bool
	// last is the member of the last grant.
	last string
	// refs counts the entries that hold the stream (g.mu): one sharedStream
	// per group stream, so its turns stay serial.
	refs int
	// pruneDue: an entry ended while a turn held mu; the next turn takes
	// the ended readers out (pruneLocked).
	pruneDue atomic.Bool
}

// hold returns the group stream of a new shared entry, made if needed.
func (g *sharedGroups) hold(filter string, stream streamKey) *sharedStream {
	k := sharedStreamKey{filter, stream}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.streams == nil {
		g.streams = make(map[sharedStreamKey]*sharedStream)
		g.held = make(map[string]int)
	}
	g.held[filter]++
	ss := g.streams[k]
	if ss == nil {
		ss = &sharedStream{key: k, waiting: make(map[*linkEntry]bool)}
		g.streams[k] = ss
	}
	ss.refs++
	return ss
}

// join makes a started entry one of its group stream's readers.
func (ss *sharedStream) join(e *linkEntry) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	e.l.sched.mu.Lock()
	ended := e.state == entryEnded // cancelled already: leave ran
	e.l.sched.mu.Unlock()
	if !ended {
		ss.readers = append(ss.readers, e)
	}
}

// leave takes an ended (or refused) entry out of its group stream. Its
// turn, if it waited for one, goes to the others.
func (g *sharedGroups) leave(e *linkEntry) {
	ss := e.read.shared.ss
	g.mu.Lock()
	defer g.mu.Unlock()
	if ss.refs--; ss.refs == 0 {
		delete(g.streams, ss.key)
	}
	if g.held[ss.key.filter]--; g.held[ss.key.filter] == 0 {
		delete(g.held, ss.key.filter)
		g.db.ForgetSharedLater(ss.key.filter)
	}
	// A turn holds mu while its grant commits, and leave runs on the
	// storage's commit path too (a revoked guard ends the session's
	// entries): waiting here for mu would wait for that commit. When a
	// turn holds it, that turn (or the next) takes e out.
	if !ss.mu.TryLock() {
		ss.pruneDue.Store(true)
		return
	}
	defer ss.mu.Unlock()
	ss.readers = slices.DeleteFunc(ss.readers, func(o *linkEntry) bool { return o == e })
	delete(ss.waiting, e)
	ss.wakeWaitingLocked()
}

// pruneLocked takes the readers that ended while a turn held mu out of
// the stream, and queues the waiting readers again (one of them may have
// the turn now).
func (ss *sharedStream) pruneLocked() {
	if !ss.pruneDue.Swap(false) {
		return
	}
	ss.readers = slices.DeleteFunc(ss.readers, entryEndedNow)
	for o := range ss.waiting {
		if entryEndedNow(o) {
			delete(ss.waiting, o)
		}
	}
	ss.wakeWaitingLocked()
}

// entryEndedNow reports whether a shared entry has ended (its link's
// scheduler lock).
func entryEndedNow(o *linkEntry) bool {
	o.l.sched.mu.Lock()
	defer o.l.sched.mu.Unlock()
	return o.state == entryEnded
}

// wakeWaitingLocked queues every waiting reader again: a grant or a
// departure may have made it their turn.
func (ss *sharedStream) wakeWaitingLocked() {
	for o := range ss.waiting {
		o.l.sched.wake(o)
	}
}

// members are the distinct members with a reader (e's included), sorted.
func (ss *sharedStream) membersLocked(e *linkEntry) []string {
	out := []string{e.read.shared.member}
	for _, o := range ss.readers {
		out = append(out, o.read.shared.member)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// readyLocked is e and the waiting readers of other members with window,
// one per member, sorted by member. A waiting reader may have lost its
// window since (its member took grants on other streams): it is not ready,
// or a slow member would hold the others' turns.
func (ss *sharedStream) readyLocked(e *linkEntry) []*linkEntry {
	ready := []*linkEntry{e}
	for o := range ss.waiting {
		m := o.read.shared.member
		if slices.ContainsFunc(ready, func(r *linkEntry) bool { return r.read.shared.member == m }) {
			continue
		}
		if entryEndedNow(o) {
			// It ended while its own turn waited for mu, after leave
			// took it out: it must not be given the turn.
			delete(ss.waiting, o)
			continue
		}
		if room, _ := o.l.roomAndWakes(o); room > 0 {
			ready = append(ready, o)
		}
	}
	slices.SortFunc(ready, func(a, b *linkEntry) int { return strings.Compare(a.read.shared.member, b.read.shared.member) })
	return ready
}

// turnLocked decides whether e may take the next grant. When it may not,
// e waits and the reader whose turn it is is woken.
func (ss *sharedStream) turnLocked(e *linkEntry) bool {
	sr := e.read.shared
	var chosen *linkEntry
	switch sr.strategy {
	case StrategyRandom:
		ready := ss.readyLocked(e)
		chosen = ready[rand.IntN(len(ready))]
	case StrategySticky:
		if ss.last != "" && ss.last != sr.member {
			for _, o := range ss.readers {
				if o.read.shared.member == ss.last {
					chosen = o
					break
				}
			}
		}
	case StrategyHashClientID, StrategyHashTopic:
		return true // per message: grantable cuts the batch
	default: // round_robin
		ready := ss.readyLocked(e)
		chosen = ready[0]
		for _, o := range ready {
			if o.read.shared.member > ss.last {
				chosen = o
				break
			}
		}
	}
	if chosen == nil || chosen == e {
		return true
	}
	ss.waiting[e] = true
	chosen.l.sched.wake(chosen)
	return false
}

// ownerOf is the member a hash strategy gives msg to.
func ownerOf(strategy string, members []string, msg *storagev1.Message) string {
	h := fnv.New32a()
	if strategy == StrategyHashTopic {
		h.Write([]byte(msg.GetTopic()))
	} else {
		h.Write([]byte(msg.GetPublisherClientId()))
	}
	return members[h.Sum32()%uint32(len(members))]
}

// stepShared is one step of a shared Read entry: at its turn, one grant
// (read, recorded, pushed). It reports whether the entry may have more at
// once.
func (l *link) stepShared(e *linkEntry) bool {
	sr := e.read.shared
	room, _ := l.roomAndWakes(e)
	if room <= 0 {
		return false // an ack wakes the entry
	}
	ss := sr.ss
	ss.mu.Lock()
	if entryEndedNow(e) {
		// It ended while it waited for mu (leave ran meanwhile): a turn
		// now would put it back among the waiting readers, where the
		// others would yield to it for good.
		ss.mu.Unlock()
		return false
	}
	ss.pruneLocked()
	resp, eos, err := l.grantLocked(e, room)
	ss.pruneLocked() // entries that ended during the turn
	ss.mu.Unlock()
	if err != nil {
		l.s.metrics.linkReads[linkReadError].Inc()
		if l.ctx.Err() == nil {
			l.endEntry(e, err)
		}
		return false
	}
	if resp == nil {
		return false
	}
	if !l.send(l.ctx, resp) {
		return false
	}
	if eos {
		l.forget(e)
		return false
	}
	return true
}

// grantLocked takes e's turn: the batch to push (nil: nothing now), whether
// it ends the stream.
func (l *link) grantLocked(e *linkEntry, room int) (*dsdv1.GatewayLinkResponse, bool, error) {
	r, sr, db, ss := e.read, e.read.shared, l.s.db, e.read.shared.ss
	if !ss.turnLocked(e) {
		return nil, false, nil
	}
	state, err := db.ReadSharedStream(l.ctx, sr.filter, sr.stream)
	if err != nil {
		return nil, false, fmt.Errorf("shared group %q: %w", sr.filter, err)
	}
	var (
		msgs  []storage.Entry
		grant *storagev1.SharedGrant
		eos   bool
	)
	if w := state.Waiting; w != nil {
		m, _, _, err := readOpen(l.ctx, db, w.ItBegin, storage.Limit{Count: int(w.Count)})
		if err != nil {
			return nil, false, l.sharedReadFailed(sr, err)
		}
		msgs = m
		grant = &storagev1.SharedGrant{Id: w.Id, ItBegin: w.ItBegin, ItEnd: w.ItEnd, Redelivery: true}
	} else {
		cur := state.Cursor
		if cur == nil {
			cur = r.it // a group new to the stream starts at the first member's start
		}
		m, next, end, err := readOpen(l.ctx, db, cur, storage.Limit{Max: min(r.batch, room), MaxBytes: l.s.opts.MaxBatchBytes})
		if err != nil {
			return nil, false, l.sharedReadFailed(sr, err)
		}
		if n := ss.cutLocked(e, m); n < len(m) {
			// A share of the messages, or those before another member's.
			if n == 0 {
				return nil, false, nil
			}
			m, end = m[:n], false
			if _, next, _, err = readOpen(l.ctx, db, cur, storage.Limit{Count: n}); err != nil {
				return nil, false, err
			}
		}
		if len(m) == 0 {
			if !end {
				l.s.metrics.linkReads[linkReadEmpty].Inc()
				ss.waiting[e] = true
				return nil, false, nil
			}
			// The group read the whole stream: this reader ends too.
			r.seq++
			l.pushed(e, r.seq, 0)
			return readBatch(e.id, r.seq, nil, next, true), true, nil
		}
		msgs, eos = m, end
		grant = &storagev1.SharedGrant{Shard: uint32(sr.stream.Shard), Generation: sr.stream.Generation,
			StaticIndex: sr.stream.StaticIndex, ItBegin: cur, ItEnd: next, Count: uint32(len(m))}
	}
	grant.Member, grant.Guard = sr.member, sr.guard
	for _, m := range msgs {
		grant.Qos2 = grant.Qos2 || m.Message.GetQos() == 2 && sr.qos == 2
	}
	id, err := db.GrantShared(l.ctx, sr.filter, grant)
	if errors.Is(err, storage.ErrSharedMoved) {
		// Another reader granted the range (this stream's readers moved
		// between sites): take the turn again from the group's state.
		l.sched.wake(e)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("shared group %q: %w", sr.filter, err)
	}
	l.s.metrics.linkReads[linkReadData].Inc()
	if grant.Redelivery {
		l.s.metrics.sharedGrants.WithLabelValues("redelivery").Inc()
	} else {
		l.s.metrics.sharedGrants.WithLabelValues("new").Inc()
	}
	ss.last = sr.member
	delete(ss.waiting, e)
	ss.wakeWaitingLocked()
	r.seq++
	l.pushed(e, r.seq, len(msgs))
	resp := readBatch(e.id, r.seq, msgs, grant.ItEnd, eos)
	resp.GetBatch().Grant = &dsdv1.SharedGrantInfo{Id: id, ItBegin: grant.ItBegin, Redelivery: grant.Redelivery}
	return resp, eos, nil
}

// sharedReadFailed returns a group stream's read error, for the reader's
// end. A stream whose generation was dropped is forgotten by its group
// first: its cursor, and its grants that waited for a member (their
// messages are counted missed), which would otherwise stay for the group's
// life and end every new reader of it the same way.
func (l *link) sharedReadFailed(sr *sharedReader, err error) error {
	if errors.Is(err, storage.ErrGenerationDropped) {
		if ferr := l.s.db.SharedStreamGone(l.ctx, sr.filter, sr.stream); ferr != nil && l.ctx.Err() == nil {
			l.s.log.Warn("shared group: dropped stream not forgotten", "filter", sr.filter, "err", ferr)
		}
	}
	return err
}

// cutLocked is how many of msgs (read from the group's cursor) e may take:
// under round_robin and random its share when other members wait for
// messages (a burst goes to all of them, not to whoever ran first); under
// a hash strategy those before the first message of another member. When
// the first is another's, that member's reader is woken and e waits.
func (ss *sharedStream) cutLocked(e *linkEntry, msgs []storage.Entry) int {
	sr := e.read.shared
	switch sr.strategy {
	case StrategyHashClientID, StrategyHashTopic:
	case StrategySticky:
		return len(msgs)
	default:
		ready := len(ss.readyLocked(e))
		return (len(msgs) + ready - 1) / ready
	}
	if len(msgs) == 0 {
		return 0
	}
	members := ss.membersLocked(e)
	for i, m := range msgs {
		owner := ownerOf(sr.strategy, members, m.Message)
		if owner == sr.member {
			continue
		}
		if i == 0 {
			ss.waiting[e] = true
			for _, o := range ss.readers {
				if o.read.shared.member == owner {
					o.l.sched.wake(o)
				}
			}
		}
		return i
	}
	return len(msgs)
}

// sharedReaderOf checks a shared Read entry: the member is its session,
// which is required.
func (l *link) sharedReaderOf(r *dsdv1.ReadEntry, st storage.Stream) (*sharedReader, error) {
	sh := r.GetShared()
	if !strings.HasPrefix(sh.GetFilter(), "$share/") {
		return nil, fmt.Errorf("%w: read entry %d: shared filter %q does not start with $share/", errInvalidRequest, r.GetEntryId(), sh.GetFilter())
	}
	if r.GetSession().GetClientId() == "" {
		return nil, fmt.Errorf("%w: read entry %d: a shared read needs its member's session", errInvalidRequest, r.GetEntryId())
	}
	if !ValidStrategy(sh.GetStrategy()) {
		return nil, fmt.Errorf("%w: read entry %d: unknown shared strategy %q", errInvalidRequest, r.GetEntryId(), sh.GetStrategy())
	}
	if sh.GetQos() > 2 {
		return nil, fmt.Errorf("%w: read entry %d: QoS %d", errInvalidRequest, r.GetEntryId(), sh.GetQos())
	}
	return &sharedReader{filter: sh.GetFilter(), member: r.GetSession().GetClientId(), guard: r.GetSession().GetGuard(),
		qos: sh.GetQos(), strategy: sh.GetStrategy(), stream: st}, nil
}

// sharedAck applies a member's SharedAck, off the receive loop.
func (l *link) sharedAck(a *dsdv1.SharedAck) {
	filter, member, id := a.GetFilter(), a.GetSession().GetClientId(), a.GetGrant()
	if !strings.HasPrefix(filter, "$share/") || member == "" || id == 0 {
		l.s.log.Warn("bad shared ack", "gateway", l.gatewayID, "filter", filter, "member", member, "grant", id)
		return
	}
	l.g.Go(func() error {
		if err := l.s.db.AckShared(l.ctx, filter, member, id); err != nil && l.ctx.Err() == nil {
			l.s.log.Warn("shared ack not applied (the grant goes back to the group when its member leaves)",
				"filter", filter, "member", member, "grant", id, "err", err)
		}
		return nil
	})
}
