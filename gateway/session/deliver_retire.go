package session

import (
	"cmp"
	"iter"
	"maps"
	"slices"

	"github.com/stratamq/strata/gateway/packet"
)

// An UNSUBSCRIBE must complete the delivery of the QoS 1 and QoS 2
// messages the server has started to send for the removed subscription
// [MQTT-3.10.4-3]: such a message, unacknowledged when the connection ends,
// is sent again when the session resumes, on any gateway. Its batch
// records are the subscription's, so a subscription with unacknowledged
// records is retired instead of deleted:
//
//   - it leaves subs (a new SUBSCRIBE of its filter makes a new one) for
//     delivery.retired, and its Subscription record is committed with
//     retired set, before the UNSUBACK;
//   - its Watch and Read entries go, its held batches and its queued
//     messages never sent are released (the server MAY drop those; a
//     resume's resends stay), so it matches and reads nothing more;
//   - its records settle as their messages are acknowledged; each stream
//     whose ring empties is deleted, and once none is left (and no retained
//     batch of it) the subscription is deleted;
//   - a resume restores it as retired: its records are replayed (sent
//     again with DUP), nothing more is read.
//
// A subscription with overlapping ones hands its messages over instead
// (deliver_overlap.go); shared subscriptions leave their group at once
// (the group grants what they held to another member).

// retires reports whether s, being unsubscribed, must be retired: it has
// records not yet settled.
func (m *Machine) retires(s *sub) bool {
	if !m.d.durable || len(s.overlaps) > 0 || localOnly(s.rec.TopicFilter) {
		return false
	}
	if _, _, shared := packet.SplitShared(s.rec.TopicFilter); shared {
		return false
	}
	return m.unsettled(s)
}

// unsettled reports whether s has a batch record not settled yet (in a
// ring, or still to be replayed) or a retained batch.
func (m *Machine) unsettled(s *sub) bool {
	for _, st := range s.streams {
		if len(st.ring) > 0 || len(st.replays) > 0 {
			return true
		}
	}
	for rb := range m.d.retained {
		if rb.sub == s {
			return true
		}
	}
	return false
}

// retire takes s out of delivery, keeping its records (see above).
func (m *Machine) retire(s *sub) {
	delete(m.d.subs, s.rec.TopicFilter)
	m.keepRetired(s)
	s.rec.Retired = true
	if s.watch != 0 {
		m.removeEntry(s.watch)
		s.watch = 0
	}
	for _, st := range s.streamsInOrder() {
		if st.entry != 0 {
			m.removeEntry(st.entry)
			st.entry = 0
		}
		st.held = nil
		m.markSettle(st)
	}
	// Queued messages never sent go, but resends (a resume's replays) stay:
	// they may have reached the client before. So does every message queued
	// before the last resend, or a crash before the UNSUBSCRIBE is durable
	// would send it again after the resends, out of order.
	mine := func(o *outMsg) bool { return o.st != nil && o.st.sub == s || o.rb != nil && o.rb.sub == s }
	lastDup := -1
	for i, o := range m.d.out.queue {
		if o.dup && mine(o) {
			lastDup = i
		}
	}
	i := -1
	released := m.releaseQueued(func(o *outMsg) bool { // each in queue order
		i++
		return i > lastDup && mine(o)
	})
	if released > 0 {
		m.out = append(m.out, Counted{Event: "unsubscribed", N: released})
	}
	m.touchSub(s)
}

// keepRetired marks s retired and keeps it in delivery.retired.
func (m *Machine) keepRetired(s *sub) {
	s.retired, s.retiring = true, true
	put(&m.d.retired, s.rec.Id, s)
}

// retiredSettled deletes a retired subscription's stream whose ring is
// empty, and the subscription once nothing of it is left.
func (m *Machine) retiredSettled(st *stream) {
	if len(st.ring) == 0 && len(st.replays) == 0 {
		m.dropStream(st)
		m.forgetRetired(st.sub)
	}
}

// forgetRetired deletes retired subscription s once it has no stream and
// no retained batch left.
func (m *Machine) forgetRetired(s *sub) {
	if !s.retired || s.gone || m.unsettled(s) {
		return
	}
	for _, st := range s.streamsInOrder() {
		m.dropStream(st)
	}
	s.gone = true
	delete(m.d.retired, s.rec.Id)
	m.deleteSubRecord(s)
}

// retiredInOrder are the retired subscriptions by id.
func (m *Machine) retiredInOrder() []*sub {
	return slices.SortedFunc(maps.Values(m.d.retired), func(a, b *sub) int { return cmp.Compare(a.rec.Id, b.rec.Id) })
}

// allSubs yields the subscriptions in force and the retired ones, in no
// order: what holds streams. It allocates nothing (settling walks it).
func (m *Machine) allSubs() iter.Seq[*sub] {
	return func(yield func(*sub) bool) {
		for _, s := range m.d.subs {
			if !yield(s) {
				return
			}
		}
		for _, s := range m.d.retired {
			if !yield(s) {
				return
			}
		}
	}
}
