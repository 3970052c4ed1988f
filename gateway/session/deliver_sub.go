package session

import (
	"strings"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// maxSubscriptions bounds the subscriptions one session holds, counting
// the new filters granted by SUBSCRIBEs not yet carried out; beyond it a
// filter is refused with Quota exceeded (0x80 in 3.1.1).
const maxSubscriptions = 1000

// maxQueuedSubOps bounds the SUBSCRIBE and UNSUBSCRIBE packets waiting to
// be carried out (each waits for dsd); a client that sends more is
// disconnected with Quota exceeded instead of queueing without bound.
const maxQueuedSubOps = 64

// subOp is a SUBSCRIBE or UNSUBSCRIBE being carried out. They are carried
// out one at a time, in order, so SUBACKs and UNSUBACKs keep the order of
// their packets.
type subOp struct {
	subscribe   *packet.Subscribe
	unsubscribe *packet.Unsubscribe
	// codes are the SUBACK codes; granted[i] is set where codes[i] grants.
	codes   []packet.ReasonCode
	granted []*packet.Subscription
	// started: runOp began carrying it out.
	started bool
}

// subscribe answers a SUBSCRIBE that passed packet.Validate: one code per
// filter, the others granted when some are refused. A new subscription
// starts at dsd's watermarks and is committed before SUBACK, so a message
// published after SUBACK is delivered, also after a gateway crash.
func (m *Machine) subscribe(p *packet.Subscribe) {
	if m.version == packet.V5 && len(p.Properties.SubscriptionIdentifiers) > 0 && !m.cfg.SubscriptionIDAvailable {
		m.abort(ReasonNotSupported, packet.SubscriptionIdentifiersNotSupported) // section 3.2.2.3.12
		return
	}
	if len(m.d.ops.queue) >= maxQueuedSubOps {
		m.abort(ReasonQuotaExceeded, packet.QuotaExceeded)
		return
	}
	op := &subOp{subscribe: p, codes: make([]packet.ReasonCode, len(p.Subscriptions)), granted: make([]*packet.Subscription, len(p.Subscriptions))}
	for i, s := range p.Subscriptions {
		op.codes[i] = m.checkSubscription(s)
		if op.codes[i] < 0x80 {
			s.QoS = byte(op.codes[i])
			op.granted[i] = &s
			m.pendGrant(s.Filter, +1)
		}
	}
	if m.state == stateClosed {
		return // a denied filter closed the connection (acl.deny_action)
	}
	m.queueOp(op)
}

func (m *Machine) unsubscribe(p *packet.Unsubscribe) {
	if len(m.d.ops.queue) >= maxQueuedSubOps {
		m.abort(ReasonQuotaExceeded, packet.QuotaExceeded)
		return
	}
	m.queueOp(&subOp{unsubscribe: p})
}

// pendGrant counts a filter granted by a SUBSCRIBE not yet carried out
// (d > 0) or carried out (d < 0), so that the subscription limit holds for
// a SUBSCRIBE with many filters and for several queued ones.
func (m *Machine) pendGrant(filter string, d int) {
	n := m.d.ops.pending[filter] + d
	if n > 0 {
		put(&m.d.ops.pending, filter, n)
		return
	}
	delete(m.d.ops.pending, filter)
	if len(m.d.ops.pending) == 0 {
		m.d.ops.pending = nil
	}
}

func (m *Machine) queueOp(op *subOp) {
	m.d.ops.queue = append(m.d.ops.queue, op)
	if len(m.d.ops.queue) == 1 {
		m.runOp()
	}
}

func (m *Machine) opDone() {
	for _, g := range m.d.ops.queue[0].granted {
		if g != nil {
			m.pendGrant(g.Filter, -1)
		}
	}
	m.d.ops.queue[0] = nil // the packet goes with it
	m.d.ops.queue = m.d.ops.queue[1:]
	if len(m.d.ops.queue) == 0 {
		m.d.ops.queue = nil
	}
	if len(m.d.ops.queue) > 0 && m.state == stateConnected {
		m.runOp()
	}
}

func (m *Machine) runOp() {
	op := m.d.ops.queue[0]
	if op.unsubscribe != nil && m.handsOver(op.unsubscribe) && !m.retireUntilDrained(op.unsubscribe) {
		// An UNSUBSCRIBE hands the removed subscription's messages over to
		// the overlapping ones (deliver_overlap.go) once it has finished
		// every message it numbered; meanwhile it numbers no more
		// (retiring). It waits (resumeOps).
		return
	}
	op.started = true
	if op.unsubscribe != nil {
		m.runUnsubscribe(op.unsubscribe)
		return
	}
	for _, g := range op.granted {
		if g != nil && m.d.subs[g.Filter] == nil && !localOnly(g.Filter) {
			seq := m.awaitCall(call{kind: callWatermarks, op: op})
			m.out = append(m.out, Watermarks{Seq: seq})
			return
		}
	}
	m.runSubscribe(op, answer{})
}

// handsOver reports whether p removes a subscription that others overlap.
func (m *Machine) handsOver(p *packet.Unsubscribe) bool {
	for _, f := range p.Filters {
		if s := m.d.subs[f]; s != nil && len(s.overlaps) > 0 {
			return true
		}
	}
	return false
}

// retireUntilDrained reports whether the subscriptions p removes have
// finished every message they numbered (no replay pending, every record
// and retained batch settled); those that have not are made to stop numbering (retiring), and
// their records to commit at once, until they have.
func (m *Machine) retireUntilDrained(p *packet.Unsubscribe) bool {
	done := m.d.resume.resuming == 0
	for _, f := range p.Filters {
		s := m.d.subs[f]
		if s == nil {
			continue
		}
		if m.unsettled(s) {
			s.retiring = true
			done = false
		}
	}
	if !done {
		// Its records settle once committed: no lazy wait.
		m.d.c.urgent = true
		m.maybeCommit()
	}
	return done
}

// resumeOps starts the UNSUBSCRIBE that waited for its subscriptions to
// drain (runOp).
func (m *Machine) resumeOps() {
	if len(m.d.ops.queue) > 0 && !m.d.ops.queue[0].started && m.state == stateConnected {
		m.runOp()
	}
}

// WatermarksDone takes the driver's answer to a Watermarks action: the
// start of every shard, indexed by shard.
func (m *Machine) WatermarksDone(now time.Time, seq uint64, starts []int64, err error) []Action {
	return m.answered(seq, answer{starts: starts, err: err})
}

// checkSubscription validates one filter of a SUBSCRIBE: the granted QoS,
// or a failure code.
func (m *Machine) checkSubscription(s packet.Subscription) packet.ReasonCode {
	v5 := m.version == packet.V5
	fail := func(code packet.ReasonCode) packet.ReasonCode {
		if v5 {
			return code
		}
		return packet.UnspecifiedError // 3.1.1 has only 0x80 [MQTT-3.9.3-2] (3.1.1)
	}
	if packet.ValidateTopicFilter(s.Filter, m.version) != nil {
		return fail(packet.TopicFilterInvalid)
	}
	filter := s.Filter
	if _, rest, shared := packet.SplitShared(s.Filter); shared {
		if !m.cfg.SharedAvailable {
			return fail(packet.SharedSubscriptionsNotSupported)
		}
		filter = rest
	}
	if !m.cfg.WildcardAvailable && strings.ContainsAny(filter, "+#") {
		return fail(packet.WildcardSubscriptionsNotSupported)
	}
	if m.authorize != nil && !m.authorize(AccessSubscribe, s.Filter) {
		m.out = append(m.out, Denied{Access: AccessSubscribe, Topic: s.Filter})
		if m.cfg.DisconnectOnDeny {
			m.abort(ReasonNotAuthorized, packet.NotAuthorized) // acl.deny_action = "disconnect"
		}
		return fail(packet.NotAuthorized)
	}
	if m.d.subs[s.Filter] == nil && m.d.ops.pending[s.Filter] == 0 && len(m.d.subs)+len(m.d.ops.pending) >= maxSubscriptions {
		return fail(packet.QuotaExceeded)
	}
	return packet.ReasonCode(min(s.QoS, m.cfg.MaxQoS)) // Granted QoS 0, 1 or 2
}

// runSubscribe creates or updates the granted subscriptions (a new state
// version each), commits them, then answers SUBACK and starts delivery.
func (m *Machine) runSubscribe(op *subOp, a answer) {
	p := op.subscribe
	var subID uint32
	hasSubID := len(p.Properties.SubscriptionIdentifiers) > 0
	if hasSubID {
		subID = p.Properties.SubscriptionIdentifiers[0]
	}
	type started struct {
		s     *sub
		isNew bool
		rh    byte
	}
	var todo []started
	for i, g := range op.granted {
		if g == nil {
			continue
		}
		s := m.d.subs[g.Filter]
		isNew := s == nil
		if isNew {
			if !localOnly(g.Filter) && (a.err != nil || len(a.starts) == 0) {
				op.codes[i] = packet.UnspecifiedError // dsd unreachable: 0x80 in both versions
				continue
			}
			s = &sub{
				rec: &storagev1.Subscription{Id: m.newID(), TopicFilter: g.Filter, StartUs: a.starts},
			}
			s.aclCheck = m.needsTopicCheck(g.Filter)
			put(&m.d.subs, g.Filter, s)
		}
		v := &storagev1.SubscriptionState{
			Id: m.newID(), SubscriptionId: s.rec.Id, TopicFilter: g.Filter, Qos: uint32(g.QoS),
			NoLocal: g.NoLocal, RetainAsPublished: g.RetainAsPublished, RetainHandling: uint32(g.RetainHandling),
		}
		if hasSubID {
			id := subID
			v.SubscriptionIdentifier = &id
		}
		put(&m.d.states, v.Id, v)
		s.state = v
		s.rec.CurrentState = v.Id
		m.refreshOverlaps(s)
		m.touchSub(s)
		todo = append(todo, started{s, isNew, g.RetainHandling})
	}
	m.durably(func() {
		m.send(&packet.Suback{PacketID: p.PacketID, ReasonCodes: op.codes})
		for _, t := range todo {
			wantRetained := m.cfg.RetainAvailable && (t.rh == 0 || t.rh == 1 && t.isNew)
			if _, _, shared := packet.SplitShared(t.s.rec.TopicFilter); shared {
				wantRetained = false // MQTT 5 section 4.8.2: retained messages are not sent to shared subscriptions
			}
			switch {
			case localOnly(t.s.rec.TopicFilter):
				if wantRetained {
					m.sendLocalRetained(t.s)
				}
			case wantRetained:
				m.fetchRetained(t.s, t.isNew)
			case t.isNew:
				m.addWatches(t.s)
			}
		}
		m.opDone()
	}, false)
}

// addWatches adds the subscription's Watch entry: one over every shard,
// each from the subscription's start there.
func (m *Machine) addWatches(s *sub) {
	if localOnly(s.rec.TopicFilter) {
		return // dsd holds none of its messages (local.go)
	}
	e := m.newEntry()
	put(&m.d.io.watches, e, s)
	s.watch = e
	m.out = append(m.out, AddWatch{Entry: e, Filter: matchFilter(s.rec.TopicFilter), StartUs: s.rec.StartUs})
}

// matchFilter is the filter messages are matched against: a shared
// subscription's without its $share/group/ prefix.
func matchFilter(f string) string {
	if _, rest, shared := packet.SplitShared(f); shared {
		return rest
	}
	return f
}

// runUnsubscribe removes the subscriptions named, commits, then answers
// UNSUBACK; MQTT 5 gets a code per filter.
func (m *Machine) runUnsubscribe(p *packet.Unsubscribe) {
	ack := &packet.Unsuback{PacketID: p.PacketID}
	var gone []*sub
	for _, f := range p.Filters {
		code := packet.Success
		switch s := m.d.subs[f]; {
		case packet.ValidateTopicFilter(f, m.version) != nil:
			code = packet.TopicFilterInvalid
		case s != nil && m.retires(s):
			m.retire(s) // its unacknowledged messages stay (deliver_retire.go)
		case s != nil:
			m.removeSub(s)
			gone = append(gone, s)
		default:
			code = packet.NoSubscriptionExisted
		}
		if m.version == packet.V5 {
			ack.ReasonCodes = append(ack.ReasonCodes, code)
		}
	}
	m.durably(func() {
		m.handedOver(gone)
		m.send(ack)
		m.opDone()
	}, false)
}

// removeSub ends a subscription: its entries, its streams, its retained
// batches; its queued messages are released (their seqnos never sent).
func (m *Machine) removeSub(s *sub) {
	s.gone = true
	delete(m.d.subs, s.rec.TopicFilter)
	m.refreshOverlaps(s)
	if s.watch != 0 {
		m.removeEntry(s.watch)
		s.watch = 0
	}
	for _, st := range s.streamsInOrder() {
		m.dropStream(st)
	}
	for _, rb := range m.retainedInOrder() {
		if rb.rec.Key.SubscriptionId == s.rec.Id {
			m.dropRetained(rb)
		}
	}
	released := m.releaseQueued(func(o *outMsg) bool {
		return o.st != nil && o.st.sub == s || o.rb != nil && o.rb.gone
	})
	if released > 0 {
		m.out = append(m.out, Counted{Event: "unsubscribed", N: released})
	}
	m.deleteSubRecord(s)
}

// deleteSubRecord has the next commit delete s's Subscription record.
func (m *Machine) deleteSubRecord(s *sub) {
	delete(m.d.c.putSubs, s.rec.Id)
	put(&m.d.c.delSubs, s.rec.Id, true)
	m.d.c.dirty = true
}

func (m *Machine) removeEntry(e uint64) {
	_, watch := m.d.io.watches[e]
	_, read := m.d.io.reads[e]
	if watch || read {
		delete(m.d.io.watches, e)
		delete(m.d.io.reads, e)
		m.out = append(m.out, RemoveEntry{Entry: e})
	}
}

// dropStream forgets a stream and deletes its ring.
func (m *Machine) dropStream(st *stream) {
	st.gone = true
	if st.entry != 0 {
		m.removeEntry(st.entry)
		st.entry = 0
	}
	delete(st.sub.streams, st.id)
	delete(m.d.c.putStreams, st)
	m.d.c.delStreams = append(m.d.c.delStreams, st.key())
	m.d.c.dirty = true
}

func (m *Machine) dropRetained(rb *retainedBatch) {
	rb.gone = true
	delete(m.d.retained, rb)
	delete(m.d.c.putRet, rb)
	m.d.c.delRet = append(m.d.c.delRet, rb.rec.Key)
	m.d.c.dirty = true
}
