package session

import "github.com/stratamq/strata/gateway/packet"

// minAliasTopic is the shortest topic name given an alias: an alias-only
// PUBLISH carries an empty topic and a 3-byte Topic Alias property, so a
// shorter name saves nothing.
const minAliasTopic = 4

// outAliases is the Topic Alias table of the PUBLISHes the gateway sends on
// one connection (MQTT 5 section 3.3.2.3.4): at most max topics; a new topic
// takes an unused alias, then the least recently sent topic's. It belongs to
// the machine, which lives as long as the connection, so every connection
// starts with an empty table, as the client's does [MQTT-3.3.2-7]: a resend
// after a reconnect carries its topic again.
type outAliases struct {
	max     uint16
	byTopic map[string]uint16
	// slots[a-1] holds alias a, in a list from the most recently sent
	// (head) to the least (tail); 0 ends the list.
	slots      []aliasSlot
	head, tail uint16

	// Counted for metrics, reported by flush: PUBLISHes that assigned an
	// alias, PUBLISHes sent with an alias only, and the topic bytes those
	// left out.
	assigned, used, omitted int
}

type aliasSlot struct {
	topic      string
	prev, next uint16
}

// newOutAliases returns an empty table; its map is made with the first
// alias, so a client that announces a maximum and receives nothing (an idle
// device) costs little.
func newOutAliases(max uint16) *outAliases {
	return &outAliases{max: max}
}

// next returns the alias a new topic would take: an unused one while there
// is one, else the least recently sent topic's.
func (a *outAliases) next() uint16 {
	if len(a.slots) < int(a.max) {
		return uint16(len(a.slots) + 1)
	}
	return a.tail
}

// assign gives alias, from next, to topic.
func (a *outAliases) assign(topic string, alias uint16) {
	if int(alias) > len(a.slots) {
		a.slots = append(a.slots, aliasSlot{})
	} else {
		a.unlink(alias)
		delete(a.byTopic, a.slots[alias-1].topic)
	}
	a.slots[alias-1].topic = topic
	put(&a.byTopic, topic, alias)
	a.pushFront(alias)
}

// touch makes alias the most recently sent.
func (a *outAliases) touch(alias uint16) {
	if a.head != alias {
		a.unlink(alias)
		a.pushFront(alias)
	}
}

func (a *outAliases) unlink(alias uint16) {
	s := &a.slots[alias-1]
	if s.prev != 0 {
		a.slots[s.prev-1].next = s.next
	} else {
		a.head = s.next
	}
	if s.next != 0 {
		a.slots[s.next-1].prev = s.prev
	} else {
		a.tail = s.prev
	}
	s.prev, s.next = 0, 0
}

func (a *outAliases) pushFront(alias uint16) {
	s := &a.slots[alias-1]
	s.prev, s.next = 0, a.head
	if a.head != 0 {
		a.slots[a.head-1].prev = alias
	}
	a.head = alias
	if a.tail == 0 {
		a.tail = alias
	}
}

// fit gives p the connection's Topic Alias, when the client takes aliases,
// and reports whether p fits the client's Maximum Packet Size
// [MQTT-3.1.2-25]. A known topic goes as the alias alone; a new one with its
// name and the alias it takes (the least recently sent topic's once all are
// in use). A new topic that fits only without the alias's 3 bytes goes
// without one, leaving the table as it was; one that does not fit at all
// changes nothing either, since the client never sees it.
func (m *Machine) fit(p *packet.Publish) bool {
	a := m.d.out.aliases
	if a == nil || len(p.Topic) < minAliasTopic {
		return m.fits(p)
	}
	topic := p.Topic
	setAlias := func(alias uint16) {
		p.Properties.TopicAlias = alias
		p.Properties.Present.Add(packet.PropTopicAlias)
	}
	if alias := a.byTopic[topic]; alias != 0 {
		setAlias(alias)
		p.Topic = ""
		if !m.fits(p) {
			return false // the shortest form: nothing smaller to try
		}
		a.touch(alias)
		a.used++
		a.omitted += len(topic)
		return true
	}
	alias := a.next()
	setAlias(alias)
	if m.fits(p) {
		a.assign(topic, alias)
		a.assigned++
		return true
	}
	p.Properties.Present.Remove(packet.PropTopicAlias)
	p.Properties.TopicAlias = 0
	return m.fits(p)
}

// fits reports whether p fits the client's Maximum Packet Size.
func (m *Machine) fits(p *packet.Publish) bool {
	if m.d.out.maxPacket == 0 {
		return true
	}
	n, err := p.Size(m.version)
	return err == nil && n <= int(m.d.out.maxPacket)
}

// countAliases reports the alias counts since the last report.
func (m *Machine) countAliases() {
	a := m.d.out.aliases
	if a == nil || a.assigned+a.used == 0 {
		return
	}
	for _, c := range []Counted{
		{Event: "topic_alias_assigned", N: a.assigned},
		{Event: "topic_alias_used", N: a.used},
		{Event: "topic_alias_omitted_bytes", N: a.omitted},
	} {
		if c.N > 0 {
			m.out = append(m.out, c)
		}
	}
	a.assigned, a.used, a.omitted = 0, 0, 0
}
