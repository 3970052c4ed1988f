package checker

import "strings"

// subRec is one Subscribe event.
type subRec struct {
	at     int // event index
	filter string
	qos    int
}

// readerSubs is what the history says about one reader's subscriptions.
type readerSubs struct {
	subs []subRec
	// clears are the indices of its Connack events with Clean set: the
	// server discarded the session, subscriptions and queued messages
	// with it.
	clears   []int
	connacks int
}

// subscriptions decides which messages a reader must receive. A reader with
// no Subscribe events must receive every acked message (the checker's
// original rule, for histories without subscription records). A reader
// with Subscribe events must receive an acked message when, at its Invoke,
// the reader held a subscription matching its topic (made after the last
// clean start before the Invoke) with min(publish QoS, subscription QoS) ≥ 1,
// and no clean start came after the Invoke (that may discard it). QoS 0 may
// be lost. Shared subscriptions ($share/...) are not modelled: they expect
// nothing.
type subscriptions struct {
	m map[string]*readerSubs
}

func newSubscriptions() *subscriptions { return &subscriptions{m: map[string]*readerSubs{}} }

func (s *subscriptions) get(reader string) *readerSubs {
	rs := s.m[reader]
	if rs == nil {
		rs = &readerSubs{}
		s.m[reader] = rs
	}
	return rs
}

func (s *subscriptions) subscribe(i int, e Event) {
	rs := s.get(e.Reader)
	rs.subs = append(rs.subs, subRec{at: i, filter: e.Topic, qos: e.QoS})
}

// connack records a reader's CONNACK and reports whether it lost its
// session: no clean start asked, Session Present 0, and an earlier
// connection in the history.
func (s *subscriptions) connack(i int, e Event) (lost bool) {
	rs := s.get(e.Reader)
	rs.connacks++
	if e.Clean {
		rs.clears = append(rs.clears, i)
		return false
	}
	return !e.SessionPresent && rs.connacks > 1
}

// expects reports whether reader must receive the acked message p.
func (s *subscriptions) expects(reader string, p *pubState) bool {
	rs := s.m[reader]
	if rs == nil || len(rs.subs) == 0 {
		return true
	}
	if !p.invoked || p.qos < 1 {
		return false
	}
	lastClear := -1
	for _, c := range rs.clears {
		if c > p.invokeAt {
			return false
		}
		lastClear = max(lastClear, c)
	}
	for _, sub := range rs.subs {
		if sub.at > lastClear && sub.at < p.invokeAt && sub.qos >= 1 && Match(sub.filter, p.topic) {
			return true
		}
	}
	return false
}

// Match reports whether the MQTT topic filter matches the topic name: '+'
// matches one level, a final '#' the parent level and any below it, and a
// filter starting with a wildcard does not match a topic starting with '$'
// [MQTT-4.7.2-1]. Shared subscription filters ($share/...) match nothing.
func Match(filter, topic string) bool {
	if strings.HasPrefix(filter, "$share/") {
		return false
	}
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return i == len(fl)-1
		}
		if i >= len(tl) {
			return false
		}
		if f != "+" && f != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}
