package session

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// resume rebuilds a session's delivery from what dsd stored
// (ARCHITECTURE.md section 6, "Delivery and replay"): every unacknowledged
// batch is re-read for exactly its count and numbered again from its record;
// messages up to committed are skipped, QoS 2 up to rec get PUBREL, the
// rest are sent again with DUP. Then every stream reads on from its
// position.
func (m *Machine) resume(sess *storagev1.Session, watermarks []int64) {
	d := &m.d
	d.resume.resumed, d.resume.dupBefore = true, watermarks
	rec := sess.GetRecord()
	d.lastID, d.missed = rec.GetLastId(), rec.GetMissedMessages()
	d.t1, d.t2 = restoreTracks(rec.GetSeqnos())
	d.resume.next = [2]uint64{d.t1.next, d.t2.next}
	for _, v := range sess.States {
		put(&d.states, v.Id, v)
		put(&d.storedStates, v.Id, true)
	}
	byID := map[uint64]*sub{}
	for _, r := range sess.Subscriptions {
		v := d.states[r.CurrentState]
		if v == nil {
			continue
		}
		if r.Generations == nil {
			r.Generations = map[uint32]uint64{}
		}
		s := &sub{rec: r, state: v}
		byID[r.Id] = s
		if r.Retired {
			s.aclCheck = m.needsTopicCheck(r.TopicFilter)
			m.keepRetired(s) // deliver_retire.go
			continue
		}
		put(&d.subs, r.TopicFilter, s)
		if m.authorize != nil && !m.authorize(AccessSubscribe, r.TopicFilter) {
			// Resumed subscriptions are checked against the ACL in force.
			m.out = append(m.out, Denied{Access: AccessSubscribe, Topic: r.TopicFilter})
			m.removeSub(s)
			continue
		}
		// Replayed and new messages alike pass the ACL in force.
		s.aclCheck = m.needsTopicCheck(r.TopicFilter)
	}
	for _, r := range sess.Streams {
		k := r.GetKey()
		s := byID[k.GetSubscriptionId()]
		if s == nil || s.gone {
			continue
		}
		id := StreamID{Shard: k.Shard, Generation: k.Generation, StaticIndex: string(k.StaticIndex)}
		st := &stream{sub: s, id: id, position: r.Position, eos: r.EndOfStream, done: r.DoneGrants, numberedUs: r.NumberedUs}
		for _, br := range r.Batches {
			b := &batch{rec: br, durable: true}
			st.ring = append(st.ring, b)
			st.replays = append(st.replays, b)
		}
		put(&s.streams, id, st)
	}
	m.allOverlaps()
	m.resumedRecords()
	for _, r := range sess.Retained {
		m.resumeRetained(byID[r.GetKey().GetSubscriptionId()], r)
	}
	for _, s := range m.retiredInOrder() {
		for _, st := range s.streamsInOrder() {
			if len(st.replays) > 0 {
				m.replayNext(st)
			} else {
				m.retiredSettled(st)
			}
		}
		m.forgetRetired(s)
	}
	for _, s := range m.subsInOrder() {
		for _, st := range s.streamsInOrder() {
			if len(st.replays) > 0 {
				m.replayNext(st)
			}
		}
		m.addWatches(s)
		for shard := range s.rec.StartUs {
			m.advance(s, uint32(shard))
		}
	}
	if d.resume.resuming == 0 {
		m.releaseUncovered()
	}
}

// replayNext re-reads the stream's next unacknowledged batch.
func (m *Machine) replayNext(st *stream) {
	b := st.replays[0]
	m.d.resume.resuming++
	seq := m.awaitCall(call{kind: callReplay, st: st, b: b})
	m.out = append(m.out, Replay{Seq: seq, Iterator: b.rec.ItBegin, Count: b.rec.Count})
}

// Replayed takes the driver's answer to a Replay action.
func (m *Machine) Replayed(now time.Time, seq uint64, msgs []*storagev1.Message, err error) []Action {
	m.now = now
	return m.answered(seq, answer{msgs: msgs, err: err})
}

func (m *Machine) replayed(st *stream, b *batch, a answer) {
	m.d.resume.resuming--
	st.replays = st.replays[1:]
	r := b.rec
	switch {
	case errors.Is(a.err, ErrStreamGone):
		m.batchLost(st, b)
	case a.err != nil:
		m.backendFailed(a.err)
		return
	case st.gone:
	default:
		v := m.d.states[r.SubState]
		if v == nil {
			m.backendFailed(fmt.Errorf("session: batch refers to unknown state version %d", r.SubState))
			return
		}
		outs, _, _ := m.number(a.msgs, v, r.Overlaps, r.FirstSeqnoQos1, r.FirstSeqnoQos2, false)
		m.d.resume.replayedRanges = append(m.d.resume.replayedRanges, [4]uint64{r.FirstSeqnoQos1, r.LastSeqnoQos1, r.FirstSeqnoQos2, r.LastSeqnoQos2})
		m.enqueue(m.replayOuts(outs, st, b, nil))
		m.sendPubrels() // QoS 2 up to rec: nothing else would send them until a commit
	}
	if len(st.replays) > 0 {
		m.replayNext(st)
	} else {
		m.advance(st.sub, st.id.Shard)
	}
	if m.d.resume.resuming == 0 {
		m.releaseUncovered()
	}
}

// replayOuts keeps what a replay must send again: QoS 1 and 2 messages
// above committed, with DUP; QoS 2 up to rec get PUBREL instead; QoS 0
// messages are not sent again (at most once: they may have gone out).
func (m *Machine) replayOuts(outs []*outMsg, st *stream, b *batch, rb *retainedBatch) []*outMsg {
	var keep []*outMsg
	released := 0
	for _, o := range outs {
		o.st, o.b, o.rb = st, b, rb
		switch {
		case o.qos == 0:
		case o.qos == 1 && o.seqno > m.d.t1.committed:
			o.dup = true
			keep = append(keep, o)
		case o.qos == 2 && o.seqno > m.d.t2.rec:
			o.dup = true
			keep = append(keep, o)
		case o.qos == 2 && o.seqno > m.d.t2.committed:
			m.d.out.pubrels = append(m.d.out.pubrels, o.seqno)
			m.d.t2.sent(o.seqno) // in flight until PUBCOMP
			released++
		}
	}
	m.out = append(m.out, Counted{Event: "replayed", N: len(keep) + released})
	return keep
}

// batchLost gives up a batch whose generation was dropped while the
// session was away: its unfinished messages are counted as missed, their
// seqnos released, and QoS 2 ids the client may hold get PUBREL
// (releaseHeld).
func (m *Machine) batchLost(st *stream, b *batch) {
	r := b.rec
	lost := 0
	for s := max(r.FirstSeqnoQos1, m.d.t1.committed+1); s <= r.LastSeqnoQos1; s++ {
		if m.d.t1.finish(s, false) {
			lost++
		}
	}
	for s := max(r.FirstSeqnoQos2, m.d.t2.committed+1); s <= r.LastSeqnoQos2; s++ {
		// Each may have been sent (dup, as stored, can lag behind what was
		// sent): PUBREL, and open until PUBCOMP, so a crash before it
		// sends PUBREL again.
		if !m.d.t2.isDone(s) {
			m.releaseHeld(s)
			lost++
		}
	}
	m.d.resume.replayedRanges = append(m.d.resume.replayedRanges, [4]uint64{r.FirstSeqnoQos1, r.LastSeqnoQos1, r.FirstSeqnoQos2, r.LastSeqnoQos2})
	m.d.missed += uint64(lost)
	for i, x := range st.ring {
		if x == b {
			st.ring = append(st.ring[:i], st.ring[i+1:]...)
			break
		}
	}
	st.eos = true
	m.touchStream(st)
	m.out = append(m.out, Counted{Event: "dropped_generation", N: lost})
}

// releaseUncovered releases the seqnos of the resumed tracks that no
// replayed batch holds (their batches were deleted with a subscription):
// nobody will send or acknowledge them. A QoS 2 one may have been sent
// (dup, as stored, can lag behind what was sent), so its packet id may be
// held by the client: it gets PUBREL (releaseHeld), or the id would stay
// held and a later message with it would not be delivered.
func (m *Machine) releaseUncovered() {
	covered := func(qos int, s uint64) bool {
		for _, r := range m.d.resume.replayedRanges {
			if s >= r[qos*2] && s <= r[qos*2+1] {
				return true
			}
		}
		return false
	}
	for i, t := range []*track{m.d.t1, m.d.t2} {
		last := m.d.resume.next[i]
		if t.qos == 1 {
			// Above every replayed record and every finished seqno lies the
			// tail the previous connection reserved and never recorded:
			// released at once.
			top := t.committed
			for _, r := range m.d.resume.replayedRanges {
				top = max(top, r[1])
			}
			for s := range t.done {
				top = max(top, s)
			}
			t.releaseGap(top+1, last)
			last = min(last, top)
		}
		for s := t.committed + 1; s <= last; s++ {
			switch {
			case covered(i, s) || t.isDone(s):
			case t.qos == 2:
				m.releaseHeld(s)
			default:
				t.finish(s, false)
			}
		}
	}
	m.d.resume.replayedRanges = nil
	// The replays came back in any order; send in the order the batches
	// were numbered, as before the crash. Otherwise a higher QoS 2 seqno
	// could fill the client's Receive Maximum while its PUBREL waits for
	// rec to pass a lower one that cannot be sent.
	slices.SortStableFunc(m.d.out.queue, func(a, b *outMsg) int {
		a1, a2 := a.numbered()
		b1, b2 := b.numbered()
		return cmp.Or(cmp.Compare(a1, b1), cmp.Compare(a2, b2))
	})
	m.sendPubrels()
	m.resumeOps()
	m.pump()
	m.maybeCommit()
}

// numbered returns the first seqnos of o's batch: batches numbered later
// have first seqnos at least as high on both tracks.
func (o *outMsg) numbered() (uint64, uint64) {
	if o.b != nil {
		return o.b.rec.FirstSeqnoQos1, o.b.rec.FirstSeqnoQos2
	}
	return o.rb.rec.FirstSeqnoQos1, o.rb.rec.FirstSeqnoQos2
}

// fetchRetained asks for the retained messages of a new subscription (or
// a re-subscription with retain handling 0); the Watch entries of a new
// one are added once they are queued, so they go out first.
func (m *Machine) fetchRetained(s *sub, isNew bool) {
	seq := m.awaitCall(call{kind: callRetained, s: s, isNew: isNew})
	m.out = append(m.out, FetchRetained{Seq: seq, Filter: matchFilter(s.rec.TopicFilter)})
}

// retainedFetched queues the retained messages fetched for s and adds the
// Watch entries of a new subscription after them.
func (m *Machine) retainedFetched(s *sub, isNew bool, a answer) {
	if s.gone {
		return
	}
	if a.err != nil {
		m.out = append(m.out, Counted{Event: "retained_unavailable", N: 1})
	} else {
		m.retainedBatches(s, a.msgs)
	}
	if isNew {
		m.addWatches(s)
	}
}

// RetainedFetched takes the driver's answer to a FetchRetained action.
func (m *Machine) RetainedFetched(now time.Time, seq uint64, msgs []*storagev1.Message, err error) []Action {
	m.now = now
	return m.answered(seq, answer{msgs: msgs, err: err})
}

// retainedBatches numbers retained messages into batch records of at most
// BatchSize messages, committed (payloads included) before they are sent.
func (m *Machine) retainedBatches(s *sub, msgs []*storagev1.Message) {
	for len(msgs) > 0 {
		n := min(len(msgs), max(1, m.cfg.BatchSize))
		chunk := msgs[:n]
		msgs = msgs[n:]
		first1, first2 := m.d.t1.next+1, m.d.t2.next+1
		outs, last1, last2 := m.number(chunk, s.state, nil, first1, first2, true)
		m.d.t1.next, m.d.t2.next = last1, last2
		rb := &retainedBatch{
			rec: &storagev1.RetainedBatch{
				Key:   &storagev1.RetainedBatchKey{SubscriptionId: s.rec.Id, Id: m.newID()},
				Count: uint32(n), FirstSeqnoQos1: first1, FirstSeqnoQos2: first2, SubState: s.state.Id,
				Records: encodeRecords(chunk),
			},
			last: [2]uint64{last1, last2},
			sub:  s,
		}
		for _, o := range outs {
			o.rb = rb
		}
		put(&m.d.retained, rb, true)
		put(&m.d.c.putRet, rb, true)
		m.d.c.dirty = true
		m.enqueue(outs)
		m.durably(func() { rb.durable = true }, false)
	}
}

// resumeRetained queues a stored retained batch again, like a replay.
func (m *Machine) resumeRetained(s *sub, r *storagev1.RetainedBatch) {
	msgs, err := decodeRecords(r.Records)
	v := m.d.states[r.SubState]
	if s == nil || s.gone || err != nil || v == nil {
		m.d.c.delRet = append(m.d.c.delRet, r.Key)
		return
	}
	outs, last1, last2 := m.number(msgs, v, nil, r.FirstSeqnoQos1, r.FirstSeqnoQos2, true)
	rb := &retainedBatch{sub: s, rec: r, last: [2]uint64{last1, last2}, durable: true}
	put(&m.d.retained, rb, true)
	m.d.resume.replayedRanges = append(m.d.resume.replayedRanges, [4]uint64{r.FirstSeqnoQos1, last1, r.FirstSeqnoQos2, last2})
	m.enqueue(m.replayOuts(outs, nil, nil, rb))
}

// encodeRecords packs messages as length-delimited protobuf records: the
// gateway's format of RetainedBatch.records.
func encodeRecords(msgs []*storagev1.Message) []byte {
	var b []byte
	for _, msg := range msgs {
		enc, err := proto.Marshal(msg)
		if err != nil {
			continue // a message dsd handed out always marshals
		}
		b = protowire.AppendBytes(b, enc)
	}
	return b
}

func decodeRecords(b []byte) ([]*storagev1.Message, error) {
	var msgs []*storagev1.Message
	for len(b) > 0 {
		enc, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, errors.New("session: corrupt retained batch record")
		}
		msg := &storagev1.Message{}
		if err := proto.Unmarshal(enc, msg); err != nil {
			return nil, fmt.Errorf("session: corrupt retained batch record: %w", err)
		}
		msgs = append(msgs, msg)
		b = b[n:]
	}
	return msgs, nil
}
