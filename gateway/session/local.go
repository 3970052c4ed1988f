package session

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/lts"
)

// LocalMessage is a message the gateway publishes itself to its own clients
// (the $SYS topics): it is never stored, and reaches only the connections
// that hold a matching subscription when it is published.
type LocalMessage struct {
	Topic   string
	Payload []byte
}

// sysPrefix starts the topics only the gateway publishes (MQTT 5 section
// 4.7.2: "$SYS/" is the de facto prefix of server information).
const sysPrefix = "$SYS/"

// sysTopic reports whether a client may not publish to topic: the $SYS
// topics are the gateway's, and a client's message there would pass for
// the gateway's own, also to later subscribers if stored.
func sysTopic(topic string) bool {
	return strings.HasPrefix(topic, sysPrefix) || topic == "$SYS"
}

// localOnly reports whether a topic filter can match only $SYS topics,
// which dsd never holds: such a subscription needs no watermarks, no Watch
// entry and no retained messages from dsd. A filter whose first level is
// a wildcard matches no topic starting with "$" [MQTT-4.7.2-1].
func localOnly(filter string) bool {
	return sysTopic(filter)
}

// Local delivers messages the gateway publishes itself (LocalMessage) to
// the matching subscriptions, at QoS 0 and without RETAIN, with no seqno,
// no record and no commit: a client that is not connected, or whose
// connection cannot take them now, never gets them. A message matching
// several subscriptions is sent once, with their Subscription Identifiers.
// Shared subscriptions get none (a group spans gateways; each would send
// its own copy).
func (m *Machine) Local(now time.Time, msgs []LocalMessage) []Action {
	m.now = now
	if m.state != stateConnected || m.d.t1 == nil {
		return m.flush()
	}
	var subs []*sub
	for _, s := range m.d.subs {
		if f := s.rec.TopicFilter; strings.HasPrefix(f, "$") && !strings.HasPrefix(f, "$share/") {
			subs = append(subs, s)
		}
	}
	if len(subs) == 0 {
		return m.flush() // the common case: no filter can match a $ topic
	}
	slices.SortFunc(subs, func(a, b *sub) int { return cmp.Compare(a.rec.Id, b.rec.Id) })
	for _, msg := range msgs {
		m.sendLocal(msg, subs, false)
	}
	return m.flush()
}

// sendLocal sends msg, at QoS 0, if one of subs matches its topic and may
// receive it (AccessDeliver for a subscription a deny rule overlaps).
func (m *Machine) sendLocal(msg LocalMessage, subs []*sub, retain bool) {
	var ids []uint32
	matched := false
	for _, s := range subs {
		if !lts.MatchTopic(s.rec.TopicFilter, msg.Topic) {
			continue
		}
		if s.aclCheck && !m.authorize(AccessDeliver, msg.Topic) {
			m.out = append(m.out, Counted{Event: "acl_denied", N: 1})
			continue
		}
		matched = true
		if st := s.state; st != nil && st.SubscriptionIdentifier != nil && m.version == packet.V5 {
			ids = append(ids, *st.SubscriptionIdentifier)
		}
	}
	if !matched {
		return
	}
	p := &packet.Publish{Topic: msg.Topic, Payload: msg.Payload, Retain: retain}
	p.Properties.SubscriptionIdentifiers = ids
	if !m.fit(p) {
		m.out = append(m.out, Counted{Event: "too_large", N: 1})
		return
	}
	m.out = append(m.out, Send{Packet: p, Version: m.version})
	// The driver reports every PUBLISH it writes (Written).
	m.d.out.unwritten++
}

// sendLocalRetained sends a new subscription of s the latest local
// messages it matches (Config.LocalRetained) with RETAIN, as retained
// messages are sent on SUBSCRIBE.
func (m *Machine) sendLocalRetained(s *sub) {
	if m.cfg.LocalRetained == nil {
		return
	}
	for _, msg := range m.cfg.LocalRetained(s.rec.TopicFilter) {
		m.sendLocal(msg, []*sub{s}, true)
	}
}

// Subscriptions returns the number of the session's subscriptions.
func (m *Machine) Subscriptions() int { return len(m.d.subs) }
