// Package topicalias resolves the Topic Aliases of the PUBLISH packets a
// test client receives, as an MQTT 5 client must (MQTT 5 section
// 3.3.2.3.4): per connection, within the maximum the client announced.
// paho.golang's client hands an alias-only PUBLISH to its handler with an
// empty topic, so tests resolve the aliases themselves.
package topicalias

import "fmt"

// Table is one connection's inbound alias table; it is not safe for
// concurrent use.
type Table struct {
	max    uint16
	topics map[uint16]string
}

// New returns the table of a connection whose CONNECT announced Topic
// Alias Maximum max (0: none).
func New(max uint16) *Table { return &Table{max: max, topics: map[uint16]string{}} }

// Resolve returns the topic of a PUBLISH that carried topic name topic and
// Topic Alias alias (nil: none), and whether it came with the alias alone.
// An alias outside 1..max [MQTT-3.3.2-9] or never set is an error.
func (t *Table) Resolve(topic string, alias *uint16) (name string, aliasOnly bool, err error) {
	if alias == nil {
		if topic == "" {
			return "", false, fmt.Errorf("topicalias: a PUBLISH with neither topic nor alias")
		}
		return topic, false, nil
	}
	a := *alias
	if a == 0 || a > t.max {
		return "", false, fmt.Errorf("topicalias: alias %d outside 1..%d", a, t.max)
	}
	if topic != "" {
		t.topics[a] = topic
		return topic, false, nil
	}
	name, ok := t.topics[a]
	if !ok {
		return "", true, fmt.Errorf("topicalias: alias %d never set on this connection", a)
	}
	return name, true, nil
}
