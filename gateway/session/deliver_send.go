package session

import (
	"cmp"
	"slices"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func (m *Machine) track(qos byte) *track {
	if qos == 2 {
		return m.d.t2
	}
	return m.d.t1
}

func (m *Machine) enqueue(outs []*outMsg) {
	for _, o := range outs {
		if o.b != nil {
			o.b.queued++
		}
		if o.rb != nil {
			o.rb.queued++
		}
	}
	m.d.out.queue = append(m.d.out.queue, outs...)
}

// releaseQueued drops the queued messages drop selects; their seqnos are
// released (not sent again). It returns how many were dropped.
func (m *Machine) releaseQueued(drop func(o *outMsg) bool) int {
	kept := m.d.out.queue[:0]
	n := 0
	for _, o := range m.d.out.queue {
		if !drop(o) {
			kept = append(kept, o)
			continue
		}
		m.dequeued(o)
		switch {
		case o.qos == 2 && o.dup:
			// A resend after a resume: the client may hold its packet id
			// since before the crash, and nothing else would release it.
			m.releaseHeld(o.seqno)
		case o.qos > 0:
			m.track(o.qos).finish(o.seqno, false)
		}
		n++
	}
	clear(m.d.out.queue[len(kept):])
	m.d.out.queue = kept
	return n
}

func (m *Machine) dequeued(o *outMsg) {
	if o.b != nil {
		o.b.queued--
		m.markSettle(o.st)
	}
	if o.rb != nil {
		o.rb.queued--
	}
}

// pump sends queued messages while the client's window, the packet-id span
// and the outbound window allow, in queue order; then settles what finished.
func (m *Machine) pump() {
	for m.state == stateConnected && m.d.t1 != nil {
		sent := m.sendQueued()
		settled := m.settleAll()
		if sent || settled {
			m.resumeOps() // an UNSUBSCRIBE may wait for these
		}
		if !sent && !settled {
			return
		}
	}
}

// sendQueued sends from the head of the queue; it reports whether it took
// anything off the queue.
func (m *Machine) sendQueued() bool {
	if m.d.resume.resuming > 0 {
		return false // the replays are put in numbering order first (releaseUncovered)
	}
	took := false
	for len(m.d.out.queue) > 0 && m.d.out.unwritten < m.cfg.OutboundWindow {
		o := m.d.out.queue[0]
		if (o.b != nil && !o.b.durable || o.rb != nil && !o.rb.durable) && !m.mayPrecedeRecord(o) {
			// Its record is not committed yet: make sure a commit carries
			// it (a lazy one may not have started).
			if o.b != nil && !o.b.sealed {
				m.d.c.urgent = true
				m.maybeCommit()
			}
			break
		}
		var t *track
		if o.qos > 0 {
			t = m.track(o.qos)
			if o.seqno > t.committed && !t.isDone(o.seqno) {
				if m.Inflight() >= m.d.out.inflightCap {
					break
				}
				if !t.canSend(o.seqno, m.d.durable) {
					if t.committed > t.durableCommitted {
						// Committing the acknowledgements frees packet ids;
						// without any, a commit would not (and another would
						// follow each one): the next PUBACK comes back here.
						m.d.c.urgent = true
						m.maybeCommit()
					}
					break
				}
			} else {
				t = nil // finished already (a replayed message the client acknowledged)
				o = nil
			}
		}
		m.d.out.queue[0] = nil
		m.d.out.queue = m.d.out.queue[1:]
		took = true
		if o == nil {
			continue
		}
		m.dequeued(o)
		p, reason := m.publishPacket(o, t)
		if p == nil {
			// Numbered but not sent: the seqno is released, so delivery
			// progress and packet ids go on as if it had been acknowledged.
			switch {
			case t != nil && o.qos == 2 && o.dup:
				// A resend after a resume: the client may hold its packet
				// id since before the crash.
				m.releaseHeld(o.seqno)
			case t != nil:
				t.finish(o.seqno, false)
			}
			m.out = append(m.out, Counted{Event: reason, N: 1})
			continue
		}
		m.out = append(m.out, Send{Packet: p, Version: m.version})
		m.d.out.unwritten++
		if t != nil {
			t.sent(o.seqno)
		}
	}
	if len(m.d.out.queue) == 0 {
		m.d.out.queue = nil
	}
	return took
}

// reserveAhead is how many QoS 1 seqnos each commit reserves beyond the
// numbering (track.durableReserved). A resume releases the unused ones.
const reserveAhead = 2048

// mayPrecedeRecord reports whether o, whose record is not durable yet, may
// be sent now: a QoS 1 message of a stream whose seqno a durable commit
// reserved. Should the record never become durable (a crash), the stream
// is read again from the last durable position: the message is sent again
// with DUP (maybeSentBefore) under a seqno above the reservation, so no
// packet id the client may still hold is reused, and nothing is lost (QoS 1
// is at least once). QoS 2 waits for its record (exactly once needs the
// same packet id on a resend); QoS 0 too (a resend would deliver it twice).
// This takes the second fsync (the record's) out of the QoS 1 delivery path.
// One edge is left: after a takeover, the old connection, until its gateway
// acts on the kick, may still send such a message on the socket the client
// abandoned; the new connection then sends it with DUP only if it was stored
// below the watermarks read at the open (a race of a few milliseconds).
func (m *Machine) mayPrecedeRecord(o *outMsg) bool {
	return o.qos == 1 && o.b != nil && !o.dup && o.seqno <= m.d.t1.durableReserved
}

// unblockWindow makes the next commit urgent when dsd cannot push st a
// whole batch more until records of it become durable: a lazy commit would
// stall the stream (a catch-up or replay fills the window in a few ms).
func (m *Machine) unblockWindow(st *stream) {
	if m.windowBlocked(st) {
		m.d.c.urgent = true
		m.maybeCommit()
	}
}

// windowBlocked reports whether dsd cannot push st a whole batch more
// until records of it become durable, and no commit is wanted yet that
// would make them so.
func (m *Machine) windowBlocked(st *stream) bool {
	if !m.d.durable || m.d.c.urgent || len(st.ring) == 0 || st.ring[0].durable || st.ring[len(st.ring)-1].sealed && st.ring[0].sealed {
		return false
	}
	if len(st.ring) < 2 && len(st.held) == 0 {
		// One record of at most BatchSize: the window (at least
		// 2 × BatchSize) always has a batch's room left.
		return false
	}
	pushed := 0
	for _, b := range st.ring {
		pushed += int(b.rec.Count)
	}
	for _, hb := range st.held {
		pushed += len(hb.msgs)
	}
	return pushed+m.cfg.BatchSize > m.readWindow()
}

// settleAll settles every stream and retained batch; it reports whether
// anything changed.
func (m *Machine) settleAll() bool {
	// Find the few streams that can move (a finished head batch, or room
	// for a held one), among those the event can have moved (settling),
	// then settle them in a fixed order: this runs on every PUBACK.
	for _, st := range m.d.overlapWaits {
		m.markSettle(st) // an older subscription may have sent since
	}
	m.d.overlapWaits = nil
	cands, pushed, all := m.settleCandidates()
	var ready []*stream
	for _, st := range cands {
		if st.gone {
			continue
		}
		if m.ready(st) {
			ready = append(ready, st)
		}
		if all {
			m.unblockWindow(st)
		}
	}
	for _, st := range pushed {
		if !st.gone {
			m.unblockWindow(st)
		}
	}
	slices.SortFunc(ready, func(a, b *stream) int {
		return cmp.Or(cmp.Compare(a.sub.rec.Id, b.sub.rec.Id), compareStreams(a, b))
	})
	changed := false
	for _, st := range ready {
		if !st.gone && m.settle(st) {
			changed = true
			if !all {
				// Its ring changed (a durable head gone): check its window
				// in the next pass, which follows as something changed.
				m.markPushed(st)
			}
		}
	}
	if len(m.d.retained) > 0 {
		for _, rb := range m.retainedInOrder() {
			if rb.durable && rb.queued == 0 && m.d.t1.covers(rb.last[0]) && m.d.t2.covers(rb.last[1]) {
				m.dropRetained(rb)
				if rb.sub != nil {
					m.forgetRetired(rb.sub)
				}
				changed = true // an UNSUBSCRIBE may wait for it (resumeOps)
			}
		}
	}
	return changed
}

// publishPacket builds the PUBLISH for o, or returns nil and why it is
// not sent: denied by the ACL (a subscription a deny rule overlaps: each
// topic is checked, replays after an ACL change included), expired (MQTT 5
// section 3.3.2.3.3; a resend goes out even if expired since) or larger than
// the client's Maximum Packet Size [MQTT-3.1.2-25]. It takes the topic's
// outbound Topic Alias (fit).
func (m *Machine) publishPacket(o *outMsg, t *track) (*packet.Publish, string) {
	if s := o.subscription(); s != nil && s.aclCheck && !m.authorize(AccessDeliver, o.msg.Topic) {
		return nil, "acl_denied"
	}
	p := &packet.Publish{Topic: o.msg.Topic, Payload: o.msg.Payload, QoS: o.qos, Retain: o.retain, Dup: o.dup}
	if t != nil {
		p.PacketID = t.packetID(o.seqno)
	}
	if m.version == packet.V5 {
		p.Properties = messageProperties(o.msg.Properties)
		if p.Properties.Present.Has(packet.PropMessageExpiryInterval) {
			deadline := time.UnixMicro(o.msg.TimestampUs).Add(time.Duration(p.Properties.MessageExpiryInterval) * time.Second)
			left := deadline.Sub(m.now)
			switch {
			case left > 0:
				p.Properties.MessageExpiryInterval = uint32((left + time.Second - 1) / time.Second)
			case !o.dup:
				return nil, "expired"
			default:
				p.Properties.MessageExpiryInterval = 0
			}
		}
		if o.hasSub {
			p.Properties.SubscriptionIdentifiers = []uint32{o.subID}
		}
		p.Properties.SubscriptionIdentifiers = append(p.Properties.SubscriptionIdentifiers, o.moreSubIDs...)
	} else if mp := o.msg.GetProperties(); mp != nil && mp.MessageExpiryInterval != nil && !o.dup &&
		!m.now.Before(time.UnixMicro(o.msg.TimestampUs).Add(time.Duration(*mp.MessageExpiryInterval)*time.Second)) {
		return nil, "expired"
	}
	if !m.fit(p) {
		return nil, "too_large"
	}
	return p, ""
}

// messageProperties turns stored publication properties into PUBLISH
// properties.
func messageProperties(mp *storagev1.MessageProperties) packet.Properties {
	var p packet.Properties
	if mp == nil {
		return p
	}
	if mp.PayloadFormat != nil {
		p.PayloadFormatIndicator = byte(*mp.PayloadFormat)
		p.Present.Add(packet.PropPayloadFormatIndicator)
	}
	if mp.MessageExpiryInterval != nil {
		p.MessageExpiryInterval = *mp.MessageExpiryInterval
		p.Present.Add(packet.PropMessageExpiryInterval)
	}
	if mp.ContentType != "" {
		p.ContentType = mp.ContentType
		p.Present.Add(packet.PropContentType)
	}
	if mp.ResponseTopic != "" {
		p.ResponseTopic = mp.ResponseTopic
		p.Present.Add(packet.PropResponseTopic)
	}
	if mp.CorrelationData != nil {
		p.CorrelationData = mp.CorrelationData
		p.Present.Add(packet.PropCorrelationData)
	}
	for _, u := range mp.UserProperties {
		p.UserProperties = append(p.UserProperties, packet.UserProperty{Key: u.Key, Value: u.Value})
	}
	return p
}

// Written tells the machine that n of the PUBLISH packets it sent were
// written to the connection, making room in the outbound window.
func (m *Machine) Written(now time.Time, n int) []Action {
	m.now = now
	m.d.out.unwritten = max(0, m.d.out.unwritten-n)
	m.pumpTargeted()
	m.maybeCommit()
	return m.flush()
}

// puback settles a QoS 1 delivery.
func (m *Machine) puback(p *packet.Puback) {
	if s, ok := m.d.t1.seqnoOf(p.PacketID); ok {
		m.d.t1.finish(s, true)
		m.pumpTargeted()
	}
}

// pubrec records a QoS 2 delivery received; PUBREL follows once rec is
// durable. A PUBREC with a failure code ends the exchange (MQTT 5 section 4.3.3).
func (m *Machine) pubrec(p *packet.Pubrec) {
	s, ok := m.d.t2.seqnoOf(p.PacketID)
	if !ok {
		m.send(&packet.Pubrel{PacketID: p.PacketID, ReasonCode: m.v5Code(packet.PacketIdentifierNotFound)})
		return
	}
	if p.ReasonCode >= 0x80 {
		m.d.t2.finish(s, true)
		m.pump()
		return
	}
	m.d.t2.receive(s)
	m.d.out.pubrels = append(m.d.out.pubrels, s)
	if m.d.durable && m.d.t2.durableRec < s {
		m.d.c.urgent = true
		m.maybeCommit()
		return
	}
	m.sendPubrels()
}

// pubcomp settles a QoS 2 delivery.
func (m *Machine) pubcomp(p *packet.Pubcomp) {
	// Only a seqno whose PUBREC came (so PUBREL may have gone out): a
	// PUBCOMP for another is a client's error, and finishing its seqno
	// would count a message as acknowledged that was never released.
	if s, ok := m.d.t2.seqnoOf(p.PacketID); ok && (s <= m.d.t2.rec || m.d.t2.received[s]) {
		m.d.t2.finish(s, true)
		m.pumpTargeted()
	}
}

// releaseHeld ends QoS 2 seqno s, which is not to be sent (again) but may
// have been sent before a crash, so the client may hold its packet id. It
// is answered with PUBREL as if its PUBREC had come: once rec covering it
// is durable (so no resume sends the message after the client let the id
// go), and it stays open until PUBCOMP (so a resume before that sends
// PUBREL again), without counting against the client's Receive Maximum:
// its PUBREL may wait for rec to pass lower seqnos still to be sent.
func (m *Machine) releaseHeld(s uint64) {
	t := m.d.t2
	t.dup = max(t.dup, s)
	put(&t.uncounted, s, true)
	t.receive(s)
	m.d.out.pubrels = append(m.d.out.pubrels, s)
	if m.d.durable && t.durableRec < s {
		m.d.c.urgent = true
	}
}

// sendPubrels sends PUBREL for each PUBREC whose rec is durable.
func (m *Machine) sendPubrels() {
	kept := m.d.out.pubrels[:0]
	for _, s := range m.d.out.pubrels {
		if m.d.durable && s > m.d.t2.durableRec {
			kept = append(kept, s)
			continue
		}
		m.send(&packet.Pubrel{PacketID: m.d.t2.packetID(s)})
	}
	m.d.out.pubrels = kept
}
