package session

import (
	"errors"
	"slices"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// ErrStreamGone: the stream's generation was dropped, so a Replay (or a
// Read entry) cannot read it any more. The driver returns it for dsd's
// NOT_FOUND.
var ErrStreamGone = errors.New("session: stream gone (generation dropped)")

// Announced takes the streams a Watch entry announced. A stream of a
// generation the subscription has finished is ignored; a known stream keeps
// its own position.
func (m *Machine) Announced(now time.Time, entry uint64, streams []AnnouncedStream) []Action {
	m.now = now
	s, ok := m.d.io.watches[entry]
	if !ok || m.state != stateConnected || s.gone {
		return m.flush()
	}
	var shards []uint32
	for _, a := range streams {
		shard := a.Stream.Shard
		if int(shard) >= len(s.rec.StartUs) {
			continue // not a shard the subscription watches
		}
		if !slices.Contains(shards, shard) {
			shards = append(shards, shard)
		}
		if cur := s.rec.Generations[shard]; cur != 0 && a.Stream.Generation < cur || s.streams[a.Stream] != nil {
			continue
		}
		put(&s.streams, a.Stream, &stream{sub: s, id: a.Stream, position: a.Iterator})
	}
	slices.Sort(shards)
	for _, shard := range shards {
		m.advance(s, shard)
	}
	m.pump()
	m.maybeCommit()
	return m.flush()
}

// Batch takes one batch a Read entry pushed. eos says the stream ended: it
// is the entry's last batch.
func (m *Machine) Batch(now time.Time, entry, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool) []Action {
	return m.pushedBatch(now, heldBatch{entry: entry, seq: batchSeq, msgs: msgs, iterator: iterator, eos: eos})
}

// GrantBatch takes one batch a shared Read entry pushed: a grant of the
// group to this session, which becomes a batch record of its own.
func (m *Machine) GrantBatch(now time.Time, entry, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool, g Grant) []Action {
	return m.pushedBatch(now, heldBatch{entry: entry, seq: batchSeq, msgs: msgs, iterator: iterator, eos: eos, grant: &g})
}

func (m *Machine) pushedBatch(now time.Time, hb heldBatch) []Action {
	m.now = now
	st, ok := m.d.io.reads[hb.entry]
	if !ok || m.state != stateConnected {
		return m.flush()
	}
	if hb.eos {
		delete(m.d.io.reads, hb.entry)
		st.entry = 0
	}
	st.held = append(st.held, hb)
	m.markPushed(st)
	m.takeHeld(st)
	m.pumpTargeted()
	m.maybeCommit()
	return m.flush()
}

// EntryFailed takes dsd's report that an entry ended with an error.
func (m *Machine) EntryFailed(now time.Time, entry uint64, failure EntryFailure, err error) []Action {
	m.now = now
	st, read := m.d.io.reads[entry]
	if _, watch := m.d.io.watches[entry]; !watch && !read || m.state != stateConnected {
		return m.flush()
	}
	delete(m.d.io.watches, entry)
	delete(m.d.io.reads, entry)
	switch failure {
	case EntryStale:
		// Taken over: the kick closes the connection.
	case EntryGone:
		if read {
			st.entry = 0
			st.eos = true // nothing more can be read; what is held still goes out
			m.touchStream(st)
			m.out = append(m.out, Counted{Event: "dropped_generation"})
			m.settle(st)
		}
	default:
		m.backendFailed(err)
	}
	m.pump()
	m.maybeCommit()
	return m.flush()
}

// EntriesLost handles the loss of every entry (the gateway link was opened
// again): watches are added again, and each stream reads on from its
// position (batches pushed and not yet taken are pushed again).
func (m *Machine) EntriesLost(now time.Time) []Action {
	m.now = now
	if m.state != stateConnected || m.d.t1 == nil {
		return m.flush()
	}
	clear(m.d.io.watches)
	clear(m.d.io.reads)
	for _, s := range m.subsInOrder() {
		// A subscription whose SUBACK (or retained messages) is still
		// awaited gets its watches then, not now as well.
		started := s.watch != 0
		s.watch = 0
		if started {
			m.addWatches(s)
		}
		for _, st := range s.streams {
			st.entry, st.held = 0, nil
		}
		for shard := range s.rec.StartUs {
			m.activate(s, uint32(shard))
		}
	}
	return m.flush()
}

// ringSize is the most batch records a stream may have unfinished; dsd
// keeps at most storage.MaxBatchesPerStream (64).
func (m *Machine) ringSize() int { return min(max(1, m.cfg.BatchesPerStream), maxRing) }

// maxRing is dsd's bound on the batch records of one stream ring.
const maxRing = 64

// readWindow is a Read entry's window: how many messages dsd may push
// ahead of the stream's finished records. It covers the client's whole
// inflight window plus a batch, so one stream can keep the client busy
// while the next batch is on its way, and it bounds what a slow
// subscriber makes the gateway hold.
func (m *Machine) readWindow() int {
	return max(m.d.out.inflightCap, m.cfg.BatchSize) + m.cfg.BatchSize
}

// canTake reports whether held batches may be numbered now: the ring has
// room (or its newest record can grow) and no replay is pending.
func (m *Machine) canTake(st *stream) bool {
	return len(st.held) > 0 && (len(st.ring) < m.ringSize() || m.growable(st) != nil) && len(st.replays) == 0 && !st.sub.retiring
}

// growable returns the stream's newest record if what dsd pushes next may
// be added to it: no commit carries it yet, and nothing was numbered after
// it (a record's seqnos are contiguous, a pure function of its first ones).
func (m *Machine) growable(st *stream) *batch {
	if len(st.ring) == 0 {
		return nil
	}
	b := st.ring[len(st.ring)-1]
	r := b.rec
	if r.SharedGrant != 0 || b.sealed || b.durable || r.SubState != st.sub.state.Id || !sameOverlaps(b.overlaps, st.sub.overlaps) || int(r.Count) >= m.cfg.BatchSize ||
		r.LastSeqnoQos1 != m.d.t1.next || r.LastSeqnoQos2 != m.d.t2.next {
		return nil
	}
	return b
}

// takeHeld numbers held batches into the ring while it can: into the
// stream's newest record while that can grow, else into a new record of at
// most BatchSize messages when the ring has room. It reports whether it
// took any.
func (m *Machine) takeHeld(st *stream) bool {
	took := false
	for len(st.held) > 0 && len(st.replays) == 0 && !st.sub.retiring {
		room, grow := m.cfg.BatchSize, m.growable(st)
		if grow != nil {
			room -= int(grow.rec.Count)
		}
		if grow == nil || len(st.held[0].msgs) > room {
			if len(st.ring) >= m.ringSize() {
				// Full: its records settle once committed and acknowledged;
				// one no commit carries yet must not wait for a lazy one.
				if !st.ring[len(st.ring)-1].sealed {
					m.d.c.urgent = true
					m.maybeCommit()
				}
				break
			}
			grow, room = nil, m.cfg.BatchSize
		}
		n, count := 1, len(st.held[0].msgs)
		if st.held[0].grant != nil {
			grow = nil // a grant is a record of its own
		}
		for st.held[0].grant == nil && n < len(st.held) && st.held[n].grant == nil && count+len(st.held[n].msgs) <= room {
			count += len(st.held[n].msgs)
			n++
		}
		if len(st.sub.overlaps) > 0 {
			// Only the batches before one that waits for an older
			// subscription's send (deliver_overlap.go).
			if n = m.notWaiting(st, n); n == 0 {
				m.waitOverlap(st)
				break
			}
		}
		hbs := st.held[:n]
		st.held = st.held[n:]
		m.take(st, hbs, grow)
		took = true
	}
	if len(st.held) == 0 {
		st.held = nil
	}
	return took
}

// take numbers consecutive pushed batches into grow (the stream's newest
// record, growable) or, when nil, a new record of the stream's ring. The
// record is committed before its QoS 0 and 2 messages are sent; QoS 1 ones
// may go before (mayPrecedeRecord).
func (m *Machine) take(st *stream, hbs []heldBatch, grow *batch) {
	last := hbs[len(hbs)-1]
	st.eos = last.eos
	var msgs []*storagev1.Message
	if len(hbs) == 1 {
		msgs = hbs[0].msgs
	} else {
		for _, hb := range hbs {
			msgs = append(msgs, hb.msgs...)
		}
	}
	var pushed []pushedBatch
	for _, hb := range hbs {
		if !hb.eos { // the entry ended with its eos batch: nothing to acknowledge
			pushed = append(pushed, pushedBatch{entry: hb.entry, seq: hb.seq})
		}
	}
	if len(msgs) == 0 {
		st.position = last.iterator
		for _, p := range pushed {
			m.ackPushed(st, p)
		}
		m.touchStream(st)
		m.settle(st)
		return
	}
	s := st.sub
	var ovs []*storagev1.Overlap // the record's: a grown one keeps its own
	if grow != nil {
		ovs = grow.rec.Overlaps
	} else {
		m.pruneEnded(s)
		ovs = recordOverlaps(s.overlaps, st.id)
	}
	outs, last1, last2 := m.number(msgs, s.state, ovs, m.d.t1.next+1, m.d.t2.next+1, false)
	if last.grant == nil {
		for _, msg := range msgs {
			st.numberedUs = max(st.numberedUs, msg.TimestampUs)
		}
	}
	b := grow
	if b != nil {
		// The newest record grows: numbering its messages and these
		// together gives the same seqnos as numbering them apart.
		b.rec.ItEnd = last.iterator
		b.rec.Count += uint32(len(msgs))
		b.pushed = append(b.pushed, pushed...)
	} else {
		rec := &storagev1.BatchRecord{ItBegin: st.position, ItEnd: last.iterator, Count: uint32(len(msgs)), SubState: s.state.Id,
			FirstSeqnoQos1: m.d.t1.next + 1, FirstSeqnoQos2: m.d.t2.next + 1}
		if g := last.grant; g != nil {
			rec.ItBegin, rec.SharedGrant = g.ItBegin, g.ID
		}
		rec.Overlaps = ovs
		b = &batch{rec: rec, pushed: pushed, overlaps: s.overlaps}
		st.ring = append(st.ring, b)
	}
	b.rec.LastSeqnoQos1, b.rec.LastSeqnoQos2 = last1, last2
	m.numbered(st, b)
	m.d.t1.next, m.d.t2.next = last1, last2
	redelivery := last.grant != nil && last.grant.Redelivery
	for _, o := range outs {
		o.b, o.st = b, st
		if o.qos == 1 && (redelivery || m.maybeSentBefore(st, o.msg)) {
			o.dup = true
		}
	}
	st.position = last.iterator
	m.touchStream(st)
	m.enqueue(outs)
	// Last: the commit this may start must carry the record. It is lazy
	// while every message of it may go before it (QoS 1 within a
	// reservation that is not running out).
	lazy := last1+reserveAhead/2 <= m.d.t1.durableReserved
	for _, o := range outs {
		lazy = lazy && o.qos == 1
	}
	switch {
	case grow == nil:
		m.durably(func() { b.durable = true }, lazy)
	case !lazy:
		m.d.c.urgent = true
		m.maybeCommit()
	}
}

// maybeSentBefore reports whether a message a resumed session reads anew
// may have been sent by its previous connection before that connection's
// record of it was durable: it was stored below its shard's watermark at
// the resume (or the watermarks are unknown).
func (m *Machine) maybeSentBefore(st *stream, msg *storagev1.Message) bool {
	r := &m.d.resume
	if !r.resumed || !m.d.durable {
		return false
	}
	shard := int(st.id.Shard)
	return r.dupBefore == nil || shard >= len(r.dupBefore) || msg.TimestampUs < r.dupBefore[shard]
}

// ackPushed releases a pushed batch's window in dsd, unless its entry is
// gone (its window went with it).
func (m *Machine) ackPushed(st *stream, p pushedBatch) {
	if p.entry != 0 && p.entry == st.entry {
		m.out = append(m.out, AckRead{Entry: p.entry, BatchSeq: p.seq})
	}
}

// number gives a batch's messages their QoS and seqnos under a
// subscription-state version and the overlapping subscriptions ovs (a
// message an older one takes is skipped: deliver_overlap.go): a pure
// function of (messages, version, overlaps, first seqnos), so a replay
// numbers exactly as the first delivery did.
func (m *Machine) number(msgs []*storagev1.Message, v *storagev1.SubscriptionState, ovs []*storagev1.Overlap, first1, first2 uint64, retained bool) (outs []*outMsg, last1, last2 uint64) {
	last1, last2 = first1-1, first2-1
	noLocal, merged := 0, 0
	for _, msg := range msgs {
		fromSelf := msg.PublisherClientId == m.req.ClientID
		if !retained && v.NoLocal && fromSelf {
			noLocal++ // [MQTT-3.8.3-3]
			continue
		}
		o := &outMsg{msg: msg, qos: min(byte(msg.Qos), byte(v.Qos)), retain: retained || v.RetainAsPublished && msg.Retain}
		if v.SubscriptionIdentifier != nil {
			o.subID, o.hasSub = *v.SubscriptionIdentifier, true
		}
		if len(ovs) > 0 && !mergeOverlaps(o, v, ovs, fromSelf) {
			merged++ // an older overlapping subscription sends it
			continue
		}
		switch o.qos {
		case 1:
			last1++
			o.seqno = last1
		case 2:
			last2++
			o.seqno = last2
		}
		outs = append(outs, o)
	}
	if noLocal > 0 {
		m.out = append(m.out, Counted{Event: "no_local", N: noLocal})
	}
	if merged > 0 {
		m.out = append(m.out, Counted{Event: "overlap_merged", N: merged})
	}
	return outs, last1, last2
}

// batchDone reports whether every message of b is sent and finished.
func (m *Machine) batchDone(b *batch) bool {
	r := b.rec
	return b.durable && b.queued == 0 &&
		(r.LastSeqnoQos1 < r.FirstSeqnoQos1 || m.d.t1.covers(r.LastSeqnoQos1)) &&
		(r.LastSeqnoQos2 < r.FirstSeqnoQos2 || m.d.t2.covers(r.LastSeqnoQos2))
}

// settle removes the finished batches at the head of a stream's ring,
// acknowledging them to dsd, takes held batches into the room made, and
// moves on to the next generation when the stream is done.
func (m *Machine) settle(st *stream) bool {
	changed := false
	for len(st.ring) > 0 && m.batchDone(st.ring[0]) {
		b := st.ring[0]
		st.ring = st.ring[1:]
		for _, p := range b.pushed {
			m.ackPushed(st, p)
		}
		if g := b.rec.SharedGrant; g != 0 {
			// The link's acknowledgement is quick; the ring's done list,
			// committed with the ring, makes it survive a crash of dsd.
			m.out = append(m.out, AckShared{Filter: st.sub.rec.TopicFilter, Grant: g})
			st.done = append(st.done, g)
			if len(st.done) > maxDoneGrants {
				st.done = slices.Delete(st.done, 0, len(st.done)-maxDoneGrants)
			}
		}
		m.touchStream(st)
		changed = true
	}
	changed = m.takeHeld(st) || changed
	switch {
	case st.gone:
	case st.sub.retired:
		m.retiredSettled(st)
	case st.eos && len(st.ring) == 0 && len(st.held) == 0:
		m.advance(st.sub, st.id.Shard) // the stream is done: maybe its generation too
	case changed:
		m.activateStream(st)
	default:
		// Nothing moved: the (subscription, shard) is as it was, so a
		// PUBACK costs O(1) per busy stream, not a walk of its streams.
	}
	return changed
}

// advance moves (subscription, shard) to its next generation when every
// stream of the current one is at its end and acknowledged (ARCHITECTURE.md
// section 6), deletes the finished streams, and adds Read entries where a
// stream of the current generation can take a batch.
func (m *Machine) advance(s *sub, shard uint32) {
	if s.retired {
		return // it reads nothing more (deliver_retire.go)
	}
	for {
		cur := s.rec.Generations[shard]
		var next uint64
		done := true
		for _, st := range s.streams {
			if st.id.Shard != shard {
				continue
			}
			switch g := st.id.Generation; {
			case cur == 0 || g > cur:
				if next == 0 || g < next {
					next = g
				}
			case g == cur:
				if !st.eos || len(st.ring) > 0 || len(st.held) > 0 || len(st.replays) > 0 {
					done = false
				}
			}
		}
		if !done || next == 0 {
			break
		}
		for _, st := range s.streamsWhere(func(st *stream) bool { return st.id.Shard == shard && st.id.Generation < next }) {
			m.dropStream(st)
		}
		put(&s.rec.Generations, shard, next)
		m.touchSub(s)
	}
	m.activate(s, shard)
}

// activate adds a Read entry for every stream of the current generation
// of (subscription, shard) that has room for a batch.
func (m *Machine) activate(s *sub, shard uint32) {
	for _, st := range s.streamsWhere(func(st *stream) bool { return m.canRead(st) && st.id.Shard == shard }) {
		m.activateStream(st)
	}
}

// canRead reports whether a stream of the current generation has room for
// a batch and no Read entry.
func (m *Machine) canRead(st *stream) bool {
	return st.id.Generation == st.sub.rec.Generations[st.id.Shard] && !st.eos && st.entry == 0 && !st.sub.retiring &&
		len(st.replays) == 0 && len(st.held) == 0 && len(st.ring) < m.ringSize() && st.position != nil
}

// activateStream adds a Read entry for st when it can take a batch.
func (m *Machine) activateStream(st *stream) {
	if !m.canRead(st) {
		return
	}
	st.entry = m.newEntry()
	put(&m.d.io.reads, st.entry, st)
	a := AddRead{Entry: st.entry, Iterator: st.position, Window: uint32(m.readWindow()), BatchSize: uint32(m.cfg.BatchSize)}
	if _, _, shared := packet.SplitShared(st.sub.rec.TopicFilter); shared {
		a.Shared = &SharedRead{Filter: st.sub.rec.TopicFilter, QoS: st.sub.state.Qos, Strategy: m.cfg.SharedStrategy}
		for _, b := range st.ring {
			if g := b.rec.SharedGrant; g != 0 {
				a.Shared.Held = append(a.Shared.Held, g)
			}
		}
		for _, hb := range st.held {
			if hb.grant != nil {
				a.Shared.Held = append(a.Shared.Held, hb.grant.ID)
			}
		}
		// Finished ones too: their acknowledgement may not have reached
		// the group yet, and they must not go to another member.
		a.Shared.Held = append(a.Shared.Held, st.done...)
	}
	m.out = append(m.out, a)
}
