package session

import "github.com/stratamq/strata/gateway/packet"

// InboundBytes is the size of the PUBLISHes the machine accepted and has not
// yet seen stored (queued or in a Store): the driver stops reading the
// connection while it is at its budget (mqtt.max_inbound_bytes), so a client
// without Receive Maximum (MQTT 3.1.1), or with QoS 0, cannot make the gateway
// buffer without bound while dsd is slow.
func (m *Machine) InboundBytes() int { return m.in.bytes }

// inboundSize is what a PUBLISH counts in InboundBytes: its encoded size.
func (m *Machine) inboundSize(p *packet.Publish) int {
	n, err := p.Size(m.version)
	if err != nil {
		return len(p.Topic) + len(p.Payload)
	}
	return n
}

// releases is the PUBREL flow of a connection: the Release actions in
// flight, bounded by Config.MaxInflightReleases, and the ids waiting for one.
// A PUBREL flood costs at most that many concurrent calls to dsd, and none
// for ids that are not held.
type releases struct {
	inflight int
	waiting  []uint16
	// known: every id held in dsd is in inbound.ids (as idHeld), because
	// the session is new or the backend said which were held.
	known bool
}

// loadHeld records the QoS 2 ids the session holds as the connection
// starts (ConnectDone): none for a new session; for a resumed one, those the
// backend's session state lists. Without that state (a backend that keeps
// none) they are unknown and every PUBREL is released in the backend.
func (m *Machine) loadHeld(r ConnectResult) {
	rel := &m.in.releases
	switch {
	case !r.SessionPresent:
		rel.known = true
	case r.Session != nil:
		rel.known = true
		for _, id := range r.Session.HeldQos2Ids {
			if id == 0 || id > 0xFFFF {
				continue
			}
			if m.in.ids == nil {
				m.in.ids = make(map[uint16]idState)
				m.in.counted = make(map[uint16]bool)
			}
			m.in.ids[uint16(id)] = idHeld
		}
	}
}

// notHeld answers the PUBREL of an id this connection does not hold, when
// it knows every held id: PUBCOMP 0x92 (packet identifier not found) in MQTT
// 5, PUBCOMP in 3.1.1 (MQTT 5 section 3.7.2.1), and no call to dsd. It reports whether
// it answered.
func (m *Machine) notHeld(id uint16) bool {
	if !m.in.releases.known {
		return false
	}
	m.send(&packet.Pubcomp{PacketID: id, ReasonCode: m.v5Code(packet.PacketIdentifierNotFound)})
	return true
}

// release starts the Release of id, or queues it while
// Config.MaxInflightReleases are in flight.
func (m *Machine) release(id uint16) {
	rel := &m.in.releases
	if max(m.cfg.MaxInflightReleases, 1) <= rel.inflight {
		rel.waiting = append(rel.waiting, id)
		return
	}
	rel.inflight++
	m.out = append(m.out, Release{Request: ReleaseRequest{ClientID: m.req.ClientID, Guard: m.guard, PacketID: id}})
}

// releaseNext takes note that a Release finished and starts the next one
// waiting.
func (m *Machine) releaseNext() {
	rel := &m.in.releases
	rel.inflight--
	if len(rel.waiting) == 0 {
		return
	}
	id := rel.waiting[0]
	rel.waiting = rel.waiting[1:]
	if len(rel.waiting) == 0 {
		rel.waiting = nil
	}
	m.release(id)
}
