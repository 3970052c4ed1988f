package session

import (
	"bytes"
	"cmp"
	"maps"
	"math"
	"slices"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// Overlapping subscriptions of one session (MQTT 5 section 3.3.4): a
// message that several of the session's subscriptions match is sent once,
// at the highest QoS they grant, with every matching Subscription
// Identifier, and with RETAIN kept if any of them has Retain As Published.
//
// Each subscription still reads its own streams; what makes one copy is a
// rule every subscription applies alike when it numbers a message: of the
// subscriptions that take the message (their filter matches its topic, it
// was stored at or after their start in its shard, No Local does not
// exclude it), the oldest one (lowest subscription id) delivers it, merged,
// and the others skip it. The rule needs only each subscription's filter,
// start and options, so a batch record carries the overlapping
// subscriptions as they were when it was numbered (BatchRecord.overlaps),
// and a replay numbers exactly as the first delivery did, whatever changed
// since.
//
// A younger subscription numbers a message that an older one delivers only
// once the older one has sent it (notWaiting: the held batch waits), so it
// never skips what nobody sent. An UNSUBSCRIBE of a subscription others
// overlap waits until it has finished every message it numbered
// (retireUntilDrained; meanwhile it numbers nothing more, retiring). Then it stays
// in the others' overlaps as ended, taking per stream exactly what it
// numbered (all of a stream of a generation it finished, else up to
// StreamRing.numbered_us: streams are in time order), so a younger
// subscription skips exactly those and delivers the rest itself, once the
// UNSUBSCRIBE is durable (pending until then: a crash would bring the
// removed one back). The ended entries are written with the removal
// (Subscription.ended) and forgotten once the subscription numbered past
// them in every stream they name. Nothing is lost and nothing is delivered
// twice, also around crashes (TestDeliveryProperties).
//
// Shared subscriptions and $SYS subscriptions take no part: a shared group
// delivers its own copies (section 4.8.2).

// overlap is another subscription of the session whose filter overlaps a
// subscription's, with its options and its start per shard; ended, it was
// removed, and took every message of the streams of generations before
// gens, and of the others those up to ends (none where absent).
type overlap struct {
	state  *storagev1.SubscriptionState
	starts []int64
	ended  bool
	ends   map[StreamID]int64
	// gens are its generations per shard when it ended: it took all of
	// every stream of an earlier generation.
	gens map[uint32]uint64
	// pending: the UNSUBSCRIBE that ended it is not durable yet; a crash
	// would bring it back, so what it would take after its ends waits
	// (notWaiting) until the commit completes (handedOver).
	pending bool
}

// takes reports whether a subscription with options w and start startUs
// in the message's shard takes msg: No Local does not exclude it, it was
// stored at or after the start, the filter matches its topic.
func takes(w *storagev1.SubscriptionState, startUs int64, msg *storagev1.Message, fromSelf bool) bool {
	return !(w.NoLocal && fromSelf) && msg.TimestampUs >= startUs && lts.MatchTopic(w.TopicFilter, msg.Topic)
}

// startIn is the overlapping subscription's start in shard.
func (o *overlap) startIn(shard uint32) int64 {
	if int(shard) < len(o.starts) {
		return o.starts[shard]
	}
	return 0
}

// merges reports whether s takes part in merging: a session subscription
// that dsd delivers.
func (s *sub) merges() bool {
	if localOnly(s.rec.TopicFilter) {
		return false
	}
	_, _, shared := packet.SplitShared(s.rec.TopicFilter)
	return !shared
}

// refreshOverlaps recomputes the overlaps of changed (a subscription just
// made, given a new state version, or removed) and of every subscription
// whose filter overlaps it. A slice of overlaps is never changed in place:
// records numbered with it keep it (growable compares them by identity).
// A removed subscription must still have its streams.
func (m *Machine) refreshOverlaps(changed *sub) {
	if !changed.merges() {
		return
	}
	var entry *overlap
	if changed.gone {
		entry = &overlap{state: changed.state, starts: changed.rec.StartUs, ended: true, gens: maps.Clone(changed.rec.Generations), pending: true}
		for id, st := range changed.streams {
			// It finished all it numbered (drained).
			if st.numberedUs > 0 {
				put(&entry.ends, id, st.numberedUs)
			}
		}
	} else {
		entry = &overlap{state: changed.state, starts: changed.rec.StartUs}
	}
	var mine []overlap
	for _, t := range m.d.subs {
		if t == changed || !t.merges() || !lts.FiltersOverlap(t.rec.TopicFilter, changed.rec.TopicFilter) {
			continue
		}
		if !changed.gone {
			mine = append(mine, overlap{state: t.state, starts: t.rec.StartUs})
		}
		t.overlaps = withOverlap(t.overlaps, changed.rec.Id, entry)
		if changed.gone {
			m.keepEnded(t)
			for _, st := range t.streams {
				m.waitOverlap(st) // it may have waited for changed
			}
		}
	}
	if !changed.gone {
		// Its own ended entries stay: it may still read what they took.
		for _, o := range changed.overlaps {
			if o.ended {
				mine = append(mine, o)
			}
		}
	}
	slices.SortFunc(mine, byOverlapID)
	changed.overlaps = mine
}

// withOverlap returns ovs with subscription id's entry replaced by entry.
func withOverlap(ovs []overlap, id uint64, entry *overlap) []overlap {
	out := make([]overlap, 0, len(ovs)+1)
	for _, o := range ovs {
		if o.state.SubscriptionId != id {
			out = append(out, o)
		}
	}
	out = append(out, *entry)
	slices.SortFunc(out, byOverlapID)
	return out
}

// allOverlaps computes every subscription's overlaps (a resumed session:
// ended entries are in its records, and none is kept beyond them).
func (m *Machine) allOverlaps() {
	subs := m.subsInOrder()
	for _, s := range subs {
		s.overlaps = nil
		for _, e := range s.rec.Ended {
			o := overlap{state: e.State, starts: e.StartUs, ended: true, gens: e.Generations}
			for _, se := range e.Ends {
				put(&o.ends, StreamID{Shard: se.Shard, Generation: se.Generation, StaticIndex: string(se.StaticIndex)}, se.EndUs)
			}
			s.overlaps = append(s.overlaps, o)
		}
	}
	for i, s := range subs {
		if !s.merges() {
			continue
		}
		for _, t := range subs[i+1:] {
			if t.merges() && lts.FiltersOverlap(s.rec.TopicFilter, t.rec.TopicFilter) {
				s.overlaps = append(s.overlaps, overlap{state: t.state, starts: t.rec.StartUs})
				t.overlaps = append(t.overlaps, overlap{state: s.state, starts: s.rec.StartUs})
			}
		}
	}
	for _, s := range subs {
		slices.SortFunc(s.overlaps, byOverlapID)
	}
}

// keepEnded records s's ended overlaps in its subscription record, so that
// a resumed session still skips what they took.
func (m *Machine) keepEnded(s *sub) {
	var ended []*storagev1.EndedSubscription
	for _, o := range s.overlaps {
		if !o.ended {
			continue
		}
		e := &storagev1.EndedSubscription{State: o.state, StartUs: o.starts, Generations: o.gens}
		for id, end := range o.ends {
			e.Ends = append(e.Ends, &storagev1.StreamEnd{Shard: id.Shard, Generation: id.Generation, StaticIndex: []byte(id.StaticIndex), EndUs: end})
		}
		slices.SortFunc(e.Ends, func(a, b *storagev1.StreamEnd) int {
			return cmp.Or(cmp.Compare(a.Shard, b.Shard), cmp.Compare(a.Generation, b.Generation), bytes.Compare(a.StaticIndex, b.StaticIndex))
		})
		ended = append(ended, e)
	}
	if len(ended) == 0 && len(s.rec.Ended) == 0 {
		return
	}
	s.rec.Ended = ended
	m.touchSub(s)
}

func byOverlapID(a, b overlap) int {
	return cmp.Compare(a.state.SubscriptionId, b.state.SubscriptionId)
}

// pruneEnded forgets s's ended overlaps that can take nothing s still
// reads: s is past the generations they finished, and in every stream they
// name, s numbered past their end, or starts after it.
func (m *Machine) pruneEnded(s *sub) {
	keep := func(o overlap) bool {
		if !o.ended {
			return true
		}
		for shard, g := range o.gens {
			if s.rec.Generations[shard] < g {
				return true
			}
		}
		for id, end := range o.ends {
			st := s.streams[id]
			passed := st != nil && st.numberedUs >= end || int(id.Shard) < len(s.rec.StartUs) && s.rec.StartUs[id.Shard] > end
			if !passed {
				return true
			}
		}
		return false
	}
	if !slices.ContainsFunc(s.overlaps, func(o overlap) bool { return !keep(o) }) {
		return
	}
	var out []overlap
	for _, o := range s.overlaps {
		if keep(o) {
			out = append(out, o)
		}
	}
	s.overlaps = out
	m.keepEnded(s)
}

// recordOverlaps is what a new record of stream id stores of ovs.
func recordOverlaps(ovs []overlap, id StreamID) []*storagev1.Overlap {
	if len(ovs) == 0 {
		return nil
	}
	out := make([]*storagev1.Overlap, len(ovs))
	for i, o := range ovs {
		out[i] = &storagev1.Overlap{State: o.state, StartUs: o.startIn(id.Shard), Ended: o.ended, EndUs: o.ends[id]}
		if o.ended && id.Generation < o.gens[id.Shard] {
			out[i].EndUs = math.MaxInt64 // it read that stream to its end
		}
	}
	return out
}

// sameOverlaps reports whether a and b are the same slice (or both empty).
func sameOverlaps(a, b []overlap) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// mergeOverlaps applies the rule to one message that v takes: it reports
// false when an older overlapping subscription delivers it; otherwise o
// gets the QoS, Subscription Identifiers and RETAIN of every subscription
// still in force that takes it.
func mergeOverlaps(o *outMsg, v *storagev1.SubscriptionState, ovs []*storagev1.Overlap, fromSelf bool) bool {
	msg := o.msg
	for _, ov := range ovs {
		w := ov.GetState()
		if w == nil || ov.Ended && msg.TimestampUs > ov.EndUs || !takes(w, ov.StartUs, msg, fromSelf) {
			continue
		}
		if w.SubscriptionId < v.SubscriptionId {
			return false
		}
		if ov.Ended {
			continue // it skipped the message for v, and is gone
		}
		o.qos = max(o.qos, min(byte(msg.Qos), byte(w.Qos)))
		o.retain = o.retain || w.RetainAsPublished && msg.Retain
		if w.SubscriptionIdentifier != nil {
			o.moreSubIDs = append(o.moreSubIDs, *w.SubscriptionIdentifier)
		}
	}
	return true
}

// notWaiting returns how many of st's first n held batches it may number
// now: those before the first with a message that st's subscription takes
// and that an older overlapping subscription (the oldest that takes it, its
// owner) delivers and has not sent yet, or that an older one whose
// UNSUBSCRIBE is not durable yet would take.
func (m *Machine) notWaiting(st *stream, n int) int {
	s := st.sub
	for i, hb := range st.held[:n] {
		if hb.grant != nil {
			return n
		}
		for _, msg := range hb.msgs {
			fromSelf := msg.PublisherClientId == m.req.ClientID
			if s.state.NoLocal && fromSelf {
				continue
			}
			if owner := m.ownerOf(s, msg, st.id.Shard, fromSelf); owner != nil && !m.sentBy(owner, st.id, msg.TimestampUs) ||
				m.pendingTakes(s, msg, st.id, fromSelf) {
				return i
			}
		}
	}
	return n
}

// pendingTakes reports whether an older subscription whose UNSUBSCRIBE is
// not durable yet would take msg of stream id beyond what it finished.
func (m *Machine) pendingTakes(s *sub, msg *storagev1.Message, id StreamID, fromSelf bool) bool {
	for i := range s.overlaps {
		o := &s.overlaps[i]
		if o.pending && o.state.SubscriptionId < s.rec.Id && takes(o.state, o.startIn(id.Shard), msg, fromSelf) &&
			id.Generation >= o.gens[id.Shard] && msg.TimestampUs > o.ends[id] {
			return true
		}
	}
	return false
}

// handedOver completes the UNSUBSCRIBE of gone, now durable: the others'
// ended entries of it are no longer pending.
func (m *Machine) handedOver(gone []*sub) {
	for _, g := range gone {
		for _, t := range m.d.subs {
			i := slices.IndexFunc(t.overlaps, func(o overlap) bool { return o.pending && o.state.SubscriptionId == g.rec.Id })
			if i < 0 {
				continue
			}
			e := t.overlaps[i]
			e.pending = false
			t.overlaps = withOverlap(t.overlaps, g.rec.Id, &e)
			for _, st := range t.streams {
				m.waitOverlap(st)
			}
		}
	}
}

// ownerOf is the oldest subscription in force, older than s, that takes
// msg: the one that delivers it (nil: s does).
func (m *Machine) ownerOf(s *sub, msg *storagev1.Message, shard uint32, fromSelf bool) *sub {
	for i := range s.overlaps { // by subscription id
		o := &s.overlaps[i]
		w := o.state
		if o.ended || w.SubscriptionId >= s.rec.Id || !takes(w, o.startIn(shard), msg, fromSelf) {
			continue
		}
		if owner := m.d.subs[w.TopicFilter]; owner != nil && owner.rec.Id == w.SubscriptionId {
			return owner
		}
	}
	return nil
}

// sentBy reports whether owner has sent (or dropped) every message it
// numbered in stream id up to ts.
func (m *Machine) sentBy(owner *sub, id StreamID, ts int64) bool {
	if owner.rec.Generations[id.Shard] > id.Generation {
		return true // it read that stream to its end, and finished it
	}
	st := owner.streams[id]
	if st != nil && st.eos && len(st.ring) == 0 && len(st.held) == 0 && len(st.replays) == 0 {
		return true // it read that stream to its end (or lost it with its generation)
	}
	return st != nil && len(st.replays) == 0 && m.sentUs(st) >= ts
}

// sentUs is the time up to which st's messages are sent: before its first
// message still queued, else all it numbered.
func (m *Machine) sentUs(st *stream) int64 {
	for _, o := range m.d.out.queue {
		if o.st == st {
			return o.msg.TimestampUs - 1
		}
	}
	return st.numberedUs
}

// waitOverlap notes st, whose held batches wait for an older subscription's
// sends: the next settleAll visits it again.
func (m *Machine) waitOverlap(st *stream) {
	if len(st.held) > 0 && !slices.Contains(m.d.overlapWaits, st) {
		m.d.overlapWaits = append(m.d.overlapWaits, st)
	}
}
