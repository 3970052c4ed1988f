package session

import (
	"cmp"
	"fmt"
	"slices"
)

// settling lets settleAll visit only the streams an event can have made
// ready to settle, instead of every stream of every subscription: it ran
// on every pushed batch, PUBACK and written packet and was the largest
// part of the session's work in fan-out (docs/benchmarks.md).
//
// A stream is ready when its head record is done (batchDone) or it can
// take held batches (canTake). Of the events the hot paths handle (a
// pushed batch, an acknowledgement, packets written) only these make a
// stream ready:
//
//   - a batch pushed to it (held grows), or numbered into its ring: the
//     stream is marked;
//   - a message of one of its records leaving the send queue (queued
//     falls): the stream is marked (outbox.dequeued);
//   - a track's committed passing the last seqno of one of its records on
//     that track (an acknowledgement, or a seqno released): covering holds,
//     per track, every record with seqnos on it in numbering order until
//     the track covers it, so a record's stream is visited when each of
//     its tracks is done with it.
//
// The same holds for a stream's window (unblockWindow): what dsd pushed
// and the gateway holds grows only with a pushed batch, and its head
// record stops being durable only when the durable ones before it settle,
// so a targeted pass checks the windows of the streams pushed to or
// settled since the last pass only.
//
// Whatever else can make a stream ready (a commit making records durable,
// a resume, a subscription or an entry coming or going) happens on other
// events, and those walk every stream as before. Readiness does not
// otherwise appear: a ring gains room only when its own stream settles,
// and a record only grows (growable) or seals.
type settling struct {
	// targeted: the event being handled is one of the hot paths above,
	// so settleAll visits marked and covered streams only.
	targeted bool
	// marked are the streams to visit at the next settleAll; spare is
	// the slice of the previous pass's candidates. pushed are the marked
	// streams a batch was pushed to (or that settled), whose windows the
	// pass checks; spare2
	// is pushed's previous slice.
	marked, spare, pushed, spare2 []*stream
	// covering are, per track (QoS 1, QoS 2), the records with seqnos on
	// it not yet covered by it, in numbering order: the records' last
	// seqnos rise along it, so the covered ones are a prefix.
	covering [2][]coverEntry
}

type coverEntry struct {
	b  *batch
	st *stream
	// last is the record's last seqno of the track, kept here so that a
	// pass reads the slice only (b.rec is a pointer away).
	last uint64
}

// checkSettling makes every targeted settleAll compare what it visits
// with a walk of every stream, and panic when it missed a ready stream.
// Tests turn it on.
var checkSettling = false

// markSettle has st visited at the next settleAll.
func (m *Machine) markSettle(st *stream) {
	if st != nil && !slices.Contains(m.d.settling.marked, st) {
		m.d.settling.marked = append(m.d.settling.marked, st)
	}
}

// numbered records that b, a record of st, was numbered or grew: each
// track it has seqnos on holds it in covering until it covers it. Only the
// newest record grows (growable), so covering stays in numbering order.
func (m *Machine) numbered(st *stream, b *batch) {
	// A record without seqnos (QoS 0, or every message skipped) is done
	// as soon as it is durable and sent: visit the stream once more.
	m.markSettle(st)
	r := b.rec
	lasts := [2]uint64{r.LastSeqnoQos1, r.LastSeqnoQos2}
	for k, has := range [2]bool{r.LastSeqnoQos1 >= r.FirstSeqnoQos1, r.LastSeqnoQos2 >= r.FirstSeqnoQos2} {
		cov := m.d.settling.covering[k]
		switch {
		case !has:
		case !b.covering[k]:
			b.covering[k] = true
			m.d.settling.covering[k] = append(cov, coverEntry{b: b, st: st, last: lasts[k]})
		case cov[len(cov)-1].b == b:
			cov[len(cov)-1].last = lasts[k] // it grew
		default:
			// Invariant: only the newest record numbered grows (growable).
			panic(fmt.Sprintf("session: record of stream %v grew behind another", st.id))
		}
	}
}

// markPushed has st visited and its window checked at the next
// settleAll: dsd pushed it a batch, or its ring settled.
func (m *Machine) markPushed(st *stream) {
	m.markSettle(st)
	if !slices.Contains(m.d.settling.pushed, st) {
		m.d.settling.pushed = append(m.d.settling.pushed, st)
	}
}

// resumedRecords puts the records a resume restored into covering, in
// numbering order (before any new one).
func (m *Machine) resumedRecords() {
	var cov []coverEntry
	for s := range m.allSubs() {
		for _, st := range s.streams {
			for _, b := range st.ring {
				cov = append(cov, coverEntry{b: b, st: st})
			}
		}
	}
	slices.SortFunc(cov, func(a, b coverEntry) int {
		return cmp.Or(cmp.Compare(a.b.rec.LastSeqnoQos1, b.b.rec.LastSeqnoQos1), cmp.Compare(a.b.rec.LastSeqnoQos2, b.b.rec.LastSeqnoQos2))
	})
	old := m.d.settling.covering
	m.d.settling.covering = [2][]coverEntry{}
	for _, e := range cov {
		m.numbered(e.st, e.b)
	}
	for k := range old {
		m.d.settling.covering[k] = append(m.d.settling.covering[k], old[k]...)
	}
}

// pumpTargeted is pump for the hot events (settling).
func (m *Machine) pumpTargeted() {
	m.d.settling.targeted = true
	m.pump()
	m.d.settling.targeted = false
}

// ready reports whether settle(st) would act.
func (m *Machine) ready(st *stream) bool {
	return len(st.ring) > 0 && m.batchDone(st.ring[0]) || m.canTake(st)
}

// wouldSettle reports whether settle(st) would change anything: its head
// record is done, or takeHeld would take a held batch. ready is looser (a
// ring that is full and whose newest record can grow, but not by the whole
// held batch, is ready and takes nothing).
func (m *Machine) wouldSettle(st *stream) bool {
	if len(st.ring) > 0 && m.batchDone(st.ring[0]) {
		return true
	}
	if len(st.held) == 0 || len(st.replays) > 0 || st.sub.retiring || len(st.sub.overlaps) > 0 && m.notWaiting(st, 1) == 0 {
		return false
	}
	room, grow := m.cfg.BatchSize, m.growable(st)
	if grow != nil {
		room -= int(grow.rec.Count)
	}
	if grow == nil || len(st.held[0].msgs) > room {
		return len(st.ring) < m.ringSize()
	}
	return true
}

// settleCandidates returns the streams settleAll visits: every stream, or
// in a targeted pass the marked ones and those of newly covered records.
// It empties marked and drops covered records from covering.
func (m *Machine) settleCandidates() (cands, pushed []*stream, all bool) {
	sg := &m.d.settling
	// Two slices take turns, so a pass allocates nothing: marked fills
	// again while cands is in use.
	cands = append(sg.spare[:0], sg.marked...)
	sg.spare = cands
	clear(sg.marked)
	sg.marked = sg.marked[:0]
	pushed = append(sg.spare2[:0], sg.pushed...)
	sg.spare2 = pushed
	clear(sg.pushed)
	sg.pushed = sg.pushed[:0]
	for k, t := range [2]*track{m.d.t1, m.d.t2} {
		cov := sg.covering[k]
		n := 0
		for _, e := range cov {
			if !t.covers(e.last) {
				break
			}
			if !slices.Contains(cands, e.st) {
				cands = append(cands, e.st)
			}
			e.b.covering[k] = false
			n++
		}
		if n > 0 {
			clear(cov[:n])
			if cov = cov[n:]; len(cov) == 0 {
				cov = sg.covering[k][:0] // reuse the array from its start
			}
			sg.covering[k] = cov
		}
	}
	if !sg.targeted {
		cands = cands[:0]
		for s := range m.allSubs() {
			for _, st := range s.streams {
				cands = append(cands, st)
			}
		}
		return cands, nil, true
	}
	if checkSettling {
		for s := range m.allSubs() {
			for _, st := range s.streams {
				if !st.gone && m.wouldSettle(st) && !slices.Contains(cands, st) {
					// Invariant: a targeted pass visits every stream that settle would move.
					panic(fmt.Sprintf("session: targeted settle missed stream %v of subscription %d (ring %d, held %d, replays %d, t1 %d/%d, t2 %d/%d)",
						st.id, st.sub.rec.Id, len(st.ring), len(st.held), len(st.replays), m.d.t1.committed, m.d.t1.next, m.d.t2.committed, m.d.t2.next))
				}
				if !st.gone && m.windowBlocked(st) && !slices.Contains(pushed, st) {
					// Invariant: only a pushed batch or a settle blocks a stream's window.
					panic(fmt.Sprintf("session: targeted settle missed the blocked window of stream %v of subscription %d", st.id, st.sub.rec.Id))
				}
			}
		}
	}
	return cands, pushed, false
}
