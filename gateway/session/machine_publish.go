package session

import (
	"errors"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// Batches: at most maxBatchMessages messages, and no more payload than
// maxBatchBytes unless a single message is larger, go in one Store.
const (
	maxBatchMessages = 256
	maxBatchBytes    = 1 << 20
	// maxQueuedQoS0 bounds the QoS 0 messages waiting for the Store in
	// flight; more are dropped (at most once).
	maxQueuedQoS0 = 4096
)

// idState is where a packet identifier of the client's is.
type idState uint8

const (
	// idStoring: a QoS 1 or 2 PUBLISH waits for its Store.
	idStoring idState = iota + 1
	// idHeld: QoS 2 stored and PUBREC sent; waiting for PUBREL.
	idHeld
	// idReleasing: PUBREL received, Release in flight.
	idReleasing
)

// pending is a PUBLISH accepted and not yet stored.
type pending struct {
	msg Message
	id  uint16
	// resend: a QoS 2 PUBLISH whose id is held (PUBREC sent); answered
	// PUBREC again once dsd confirms (DUPLICATE), not counted again.
	resend bool
	// size is the message's share of inbound.bytes.
	size int
}

// inbound is the state of the client's PUBLISHes.
type inbound struct {
	// nextSeq is the producer sequence number of the next message stored.
	nextSeq uint64
	// storing are the batches of the Stores in flight, oldest first: the
	// backend completes them in that order. At most storesInFlight.
	storing [][]pending
	queue   []pending
	qos0    int
	// unacked counts the QoS 1 and 2 PUBLISHes that are not finished
	// (PUBACK or PUBCOMP not sent), against the Receive Maximum.
	unacked int
	ids     map[uint16]idState
	// counted says whether an id is counted in unacked.
	counted map[uint16]bool
	// bytes is the size of the messages queued and storing
	// (InboundBytes); releases holds the PUBREL flow (machine_limits.go).
	bytes    int
	releases releases
	// hold: the driver has more PUBLISHes at hand (HoldStores); queued
	// messages wait for them to make one Store.
	hold bool
}

// HoldStores tells the machine whether the driver has another packet at
// hand, read and ready to be handled at once (a whole packet in its read
// buffer). While it has, PUBLISHes queue instead of each starting a Store,
// so that a client that pipelines many gets one Store for what arrived
// together (one producer range, one answer) instead of one per message;
// HoldStores(false) starts what queued. The driver must call
// HoldStores(false) before it waits for anything (the network, the inbound
// budget): held messages are not on their way to dsd. Any packet other than
// a PUBLISH releases the hold before it is handled.
func (m *Machine) HoldStores(now time.Time, hold bool) []Action {
	if m.state != stateConnected {
		hold = false
	}
	m.now = now
	m.in.hold = hold
	if !hold {
		m.storeNext()
	}
	return m.flush()
}

// publish handles a PUBLISH that passed packet.Validate (which checked the
// topic name, the Topic Alias range and the payload format).
func (m *Machine) publish(p *packet.Publish) {
	v5 := m.version == packet.V5
	if v5 && p.Properties.Present.Has(packet.PropTopicAlias) {
		alias := p.Properties.TopicAlias // 1..TopicAliasMaximum: Validate checked
		if p.Topic == "" {
			topic, ok := m.aliases[alias]
			if !ok {
				m.abort(ReasonProtocolError, packet.ProtocolError) // section 3.3.2.3.4: unknown alias
				return
			}
			p.Topic = topic
		} else {
			if m.aliases == nil {
				m.aliases = make(map[uint16]string)
			}
			m.aliases[alias] = p.Topic
		}
		// The alias is this connection's; the message carries the topic.
		p.Properties.Present.Remove(packet.PropTopicAlias)
		p.Properties.TopicAlias = 0
	}
	if p.Retain && v5 && !m.cfg.RetainAvailable {
		m.abort(ReasonNotSupported, packet.RetainNotSupported) // [MQTT-3.3.1-11] (v5 section 3.2.2.3.5)
		return
	}
	if p.QoS > m.cfg.MaxQoS {
		m.abort(ReasonNotSupported, packet.QoSNotSupported) // [MQTT-3.2.2-11]
		return
	}
	in := &m.in
	resend := false
	if p.QoS > 0 {
		switch in.ids[p.PacketID] {
		case idStoring, idReleasing:
			// A resend of a PUBLISH being handled: its answer comes.
			return
		case idHeld:
			if p.QoS != 2 {
				m.abort(ReasonProtocolError, packet.ProtocolError) // a QoS 2 id reused before PUBREL
				return
			}
			resend = true
		}
	}
	// The $SYS topics are the gateway's (local.go): refused as the ACL
	// refuses, whatever its rules.
	if sysTopic(p.Topic) || m.authorize != nil && !m.authorize(AccessPublish, p.Topic) {
		m.out = append(m.out, Denied{Access: AccessPublish, Topic: p.Topic})
		switch {
		case m.cfg.DisconnectOnDeny:
			m.abort(ReasonNotAuthorized, packet.NotAuthorized) // acl.deny_action = "disconnect"
		case p.QoS == 0:
			// Dropped: QoS 0 has no answer.
		default:
			// acl.deny_action = "ignore": MQTT 5 gets 0x87; 3.1.1 has no
			// negative acknowledgement, so it is acknowledged normally and
			// the message dropped [MQTT-3.3.5-2] (3.1.1), as mosquitto
			// and EMQX do.
			m.nack(p.QoS, p.PacketID, m.v5Code(packet.NotAuthorized))
			if resend {
				m.forget(p.PacketID)
			}
		}
		return
	}
	if p.QoS > 0 && !resend {
		// Receive Maximum [MQTT-3.3.4-9]; 3.1.1 clients are bounded by
		// the 65,535 packet identifiers.
		if v5 && in.unacked >= int(m.cfg.ReceiveMaximum) {
			m.abort(ReasonProtocolError, packet.ReceiveMaximumExceeded)
			return
		}
		if in.ids == nil {
			in.ids = make(map[uint16]idState)
			in.counted = make(map[uint16]bool)
		}
		in.unacked++
		in.counted[p.PacketID] = true
	}
	if p.QoS == 0 {
		if len(in.storing) > 0 && in.qos0 >= maxQueuedQoS0 {
			// At most once: dropped while dsd is behind, and counted.
			m.out = append(m.out, Counted{Event: "qos0_overflow", N: 1})
			return
		}
		in.qos0++
	} else {
		in.ids[p.PacketID] = idStoring
	}
	in.queue = append(in.queue, pending{
		msg: Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Properties: p.Properties},
		id:  p.PacketID, resend: resend, size: m.inboundSize(p),
	})
	in.bytes += in.queue[len(in.queue)-1].size
	m.storeNext()
}

// HoldingStores reports whether HoldStores(true) is in force.
func (m *Machine) HoldingStores() bool { return m.in.hold }

// storesInFlight is how many Stores a connection may have in flight
// (Config.StoresInFlight).
func (m *Machine) storesInFlight() int {
	if m.cfg.StoresInFlight > 0 {
		return m.cfg.StoresInFlight
	}
	return max(int(m.cfg.ReceiveMaximum), 1)
}

// storeNext starts Stores of the queued messages while the pipeline has
// room.
func (m *Machine) storeNext() {
	for len(m.in.queue) > 0 && !m.in.hold && len(m.in.storing) < m.storesInFlight() && m.state == stateConnected {
		m.storeBatch()
	}
}

// storeBatch starts a Store of the messages at the head of the queue.
func (m *Machine) storeBatch() {
	in := &m.in
	n, size := 0, 0
	for n < len(in.queue) && n < maxBatchMessages {
		size += len(in.queue[n].msg.Payload)
		if n > 0 && size > maxBatchBytes {
			break
		}
		n++
	}
	batch := in.queue[:n:n]
	in.queue = in.queue[n:]
	if len(in.queue) == 0 {
		in.queue = nil
	}
	if in.nextSeq == 0 {
		in.nextSeq = 1
	}
	req := StoreRequest{ClientID: m.req.ClientID, Guard: m.guard, FirstSeq: in.nextSeq}
	hasQoS2 := false
	for _, e := range batch {
		req.Messages = append(req.Messages, e.msg)
		hasQoS2 = hasQoS2 || e.msg.QoS == 2
	}
	if hasQoS2 {
		req.QoS2PacketIDs = make([]uint16, len(batch))
		for i, e := range batch {
			if e.msg.QoS == 2 {
				req.QoS2PacketIDs[i] = e.id
			}
		}
	}
	in.nextSeq += uint64(n)
	in.storing = append(in.storing, batch)
	m.out = append(m.out, Store{Request: req})
}

// StoreDone takes the result of the oldest Store action in flight (the
// backend completes a connection's Stores in order): nil once dsd
// committed the messages (STORED or DUPLICATE), then PUBACK (QoS 1) or
// PUBREC (QoS 2) in publish order. A stale guard closes the connection
// (the session was taken over); any other failure answers the batch's QoS 1
// and 2 PUBLISHes with StoreCode (MQTT 5) and closes the connection, as
// the producer sequence can no longer go on: whether the batch was
// committed is unknown. MQTT 3.1.1 has no negative acknowledgement: the
// connection closes.
func (m *Machine) StoreDone(now time.Time, err error) []Action {
	in := &m.in
	if len(in.storing) == 0 {
		return m.flush()
	}
	batch := in.storing[0]
	in.storing = in.storing[1:]
	if len(in.storing) == 0 {
		in.storing = nil
	}
	if m.state != stateConnected {
		return m.flush()
	}
	for _, e := range batch {
		if e.msg.QoS == 0 {
			in.qos0--
		}
		in.bytes -= e.size
	}
	switch {
	case err == nil:
		for _, e := range batch {
			switch e.msg.QoS {
			case 1:
				m.send(&packet.Puback{PacketID: e.id})
				m.forget(e.id)
			case 2:
				in.ids[e.id] = idHeld
				m.send(&packet.Pubrec{PacketID: e.id})
			}
		}
		m.storeNext()
		m.drained()
	case errors.Is(err, ErrStaleGuard):
		m.abort(ReasonTakenOver, packet.SessionTakenOver)
	default:
		code := StoreCode(err)
		if m.version == packet.V5 {
			for _, e := range batch {
				if e.msg.QoS > 0 {
					m.nack(e.msg.QoS, e.id, code)
				}
			}
		}
		m.abort(ReasonBackendError, code)
	}
	return m.flush()
}

// pubrel handles PUBREL: the id is released in dsd (Release action, at
// most Config.MaxInflightReleases at once), and PUBCOMP is sent when that is
// done. An id that is not held is answered at once, without a call to dsd,
// when the machine knows every held id (machine_limits.go); otherwise it is
// still released: it may be held from an earlier connection.
func (m *Machine) pubrel(p *packet.Pubrel) {
	in := &m.in
	switch in.ids[p.PacketID] {
	case idReleasing:
		return
	case idStoring:
		m.abort(ReasonProtocolError, packet.ProtocolError) // PUBREL before PUBREC
		return
	case 0:
		if m.notHeld(p.PacketID) {
			return
		}
	}
	if in.ids == nil {
		in.ids = make(map[uint16]idState)
		in.counted = make(map[uint16]bool)
	}
	in.ids[p.PacketID] = idReleasing
	m.release(p.PacketID)
}

// ReleaseDone takes the result of a Release action: PUBCOMP (0x92 in MQTT 5
// when the id was not held). A stale guard closes the connection; another
// failure closes it too (the client sends PUBREL again after reconnecting).
func (m *Machine) ReleaseDone(now time.Time, packetID uint16, released bool, err error) []Action {
	if m.state != stateConnected || m.in.ids[packetID] != idReleasing {
		return m.flush()
	}
	m.releaseNext()
	switch {
	case err == nil:
		m.forget(packetID)
		code := packet.Success
		if !released {
			code = m.v5Code(packet.PacketIdentifierNotFound)
		}
		m.send(&packet.Pubcomp{PacketID: packetID, ReasonCode: code})
	case errors.Is(err, ErrStaleGuard):
		m.abort(ReasonTakenOver, packet.SessionTakenOver)
	default:
		m.abort(ReasonBackendError, StoreCode(err))
	}
	return m.flush()
}

// forget ends the exchange of a packet identifier.
func (m *Machine) forget(id uint16) {
	in := &m.in
	if in.counted[id] {
		delete(in.counted, id)
		in.unacked--
	}
	delete(in.ids, id)
}

// nack answers a QoS 1 or 2 PUBLISH with a failure reason code (MQTT 5),
// which ends its exchange (section 4.3.3: a PUBREC of 0x80 or more ends a
// QoS 2 exchange).
func (m *Machine) nack(qos byte, id uint16, code packet.ReasonCode) {
	if qos == 1 {
		m.send(&packet.Puback{PacketID: id, ReasonCode: code})
		return
	}
	m.send(&packet.Pubrec{PacketID: id, ReasonCode: code})
}
