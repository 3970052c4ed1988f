package session

import storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"

// pidSpan is how many packet ids each QoS track owns: QoS 1 seqnos map to
// packet ids 1..32767, QoS 2 seqnos to 32768..65534, so the two tracks never
// collide. A track never has more than pidSpan-1 seqnos between its durable
// committed seqno and the highest sent, so an id is never reused while the
// client (or a replay after a crash) may still hold it.
const pidSpan = 32767

// MaxInflight is the most QoS 1 and 2 messages one connection has
// unacknowledged (ARCHITECTURE.md section 6): min(Receive Maximum, this).
const MaxInflight = pidSpan - 1

// track is one QoS track of a session's outbound sequence numbers
// (ARCHITECTURE.md section 6). Seqnos are assigned in numbering order;
// committed is the contiguous prefix acknowledged (or released: never to be
// sent); dup is the highest sent; rec (QoS 2) the contiguous prefix for
// which PUBREC arrived.
type track struct {
	qos                 byte
	committed, dup, rec uint64
	next                uint64
	// done holds seqnos above committed that are acknowledged or
	// released; received those above rec with a PUBREC (QoS 2).
	done, received map[uint64]bool
	// gapFrom..gapTo (inclusive; 0 when none) are released in bulk: the
	// seqnos a resume skips (reserved by the previous connection and not
	// in any record), counted as done without a map entry each.
	gapFrom, gapTo uint64
	// durableCommitted and durableRec are committed and rec as of the last
	// successful commit: what a replay after a crash starts from.
	durableCommitted, durableRec uint64
	// durableReserved (QoS 1) is the highest seqno a durable commit
	// reserved: a resumed session numbers above it, so seqnos up to it may
	// be sent before their record is durable (mayPrecedeRecord) without a
	// packet id of theirs ever being given to another message.
	durableReserved uint64
	// inflight counts seqnos sent and not finished.
	inflight int
	// uncounted are seqnos awaiting PUBCOMP that are not in inflight:
	// given up and answered with PUBREL only (Machine.releaseHeld), they
	// take none of the client's Receive Maximum.
	uncounted map[uint64]bool
}

func newTrack(qos byte) *track {
	return &track{qos: qos}
}

// packetID derives the packet id of seqno s.
func (t *track) packetID(s uint64) uint16 {
	base := uint64(1)
	if t.qos == 2 {
		base = pidSpan + 1
	}
	return uint16(base + (s-1)%pidSpan)
}

// seqnoOf finds the sent, unfinished seqno whose packet id is id.
func (t *track) seqnoOf(id uint16) (uint64, bool) {
	base := uint64(1)
	if t.qos == 2 {
		base = pidSpan + 1
	}
	k := uint64(id)
	if k < base || k >= base+pidSpan {
		return 0, false
	}
	k -= base
	from := t.committed + 1
	s := from + (k+pidSpan-(from-1)%pidSpan)%pidSpan
	if s > t.dup || t.isDone(s) {
		return 0, false
	}
	return s, true
}

// canSend reports whether seqno s may go out without its packet id
// colliding with one a replay could still resend (durable sessions) or
// one the client still holds.
func (t *track) canSend(s uint64, durable bool) bool {
	if !durable {
		// No replay can resend an id: only unfinished seqnos hold one.
		return s-t.committed < pidSpan
	}
	return s-t.durableCommitted < pidSpan
}

// sent records that seqno s went to the client.
func (t *track) sent(s uint64) {
	t.inflight++
	if s > t.dup {
		t.dup = s
	}
}

// finish marks s acknowledged (wasSent) or released, and advances
// committed over the contiguous prefix. It reports whether s was open.
func (t *track) finish(s uint64, wasSent bool) bool {
	if s <= t.committed || t.isDone(s) {
		return false
	}
	if wasSent && !t.uncounted[s] {
		t.inflight--
	}
	delete(t.uncounted, s)
	if s == t.committed+1 {
		// In order (the common case): committed moves without a map entry,
		// which would be made and dropped again on every acknowledgement.
		t.committed = s
	} else {
		put(&t.done, s, true)
	}
	t.advanceCommitted()
	t.advanceRec()
	return true
}

// isDone reports whether s (above committed) is acknowledged or released.
func (t *track) isDone(s uint64) bool {
	return t.done[s] || t.gapTo != 0 && s >= t.gapFrom && s <= t.gapTo
}

// advanceCommitted moves committed over the contiguous finished seqnos.
func (t *track) advanceCommitted() {
	for {
		n := t.committed + 1
		switch {
		case t.done[n]:
			delete(t.done, n)
			t.committed = n
		case t.gapTo != 0 && n >= t.gapFrom && n <= t.gapTo:
			t.committed = t.gapTo
			t.gapFrom, t.gapTo = 0, 0
		default:
			if len(t.done) == 0 {
				t.done = nil // nothing above committed: no map to keep
			}
			return
		}
	}
}

// releaseGap releases seqnos from..to at once (nothing in them is sent or
// held): the tail a resume skips.
func (t *track) releaseGap(from, to uint64) {
	if from > to {
		return
	}
	t.gapFrom, t.gapTo = from, to
	t.advanceCommitted()
	t.advanceRec()
}

// receive records a PUBREC for s (QoS 2) and advances rec.
func (t *track) receive(s uint64) {
	if s > t.rec {
		put(&t.received, s, true)
	}
	t.advanceRec()
}

func (t *track) advanceRec() {
	if t.rec < t.committed {
		t.rec = t.committed
	}
	for {
		n := t.rec + 1
		if t.received[n] {
			delete(t.received, n)
		} else if !t.isDone(n) {
			return
		}
		t.rec = n
	}
}

// covers reports whether every seqno up to last is finished.
func (t *track) covers(last uint64) bool { return t.committed >= last }

// seqnoTracks is the persisted form of the two tracks.
func seqnoTracks(t1, t2 *track) *storagev1.SeqnoTracks {
	return &storagev1.SeqnoTracks{
		CommittedQos1: t1.committed, DupQos1: t1.dup, NextQos1: t1.next,
		CommittedQos2: t2.committed, DupQos2: t2.dup, RecQos2: t2.rec, NextQos2: t2.next,
	}
}

// restoreTracks rebuilds the tracks of a resumed session.
func restoreTracks(s *storagev1.SeqnoTracks) (*track, *track) {
	t1, t2 := newTrack(1), newTrack(2)
	if s == nil {
		return t1, t2
	}
	t1.committed, t1.dup, t1.next = s.CommittedQos1, s.DupQos1, s.NextQos1
	t2.committed, t2.dup, t2.rec, t2.next = s.CommittedQos2, s.DupQos2, s.RecQos2, s.NextQos2
	for _, t := range []*track{t1, t2} {
		t.dup = max(t.dup, t.committed)
		t.next = max(t.next, t.dup)
		t.rec = max(t.rec, t.committed)
		t.durableCommitted, t.durableRec = t.committed, t.rec
		// Seqnos up to next may have been used by the previous connection;
		// new ones are above them, so none of them is reserved yet.
		t.durableReserved = t.next
	}
	return t1, t2
}
