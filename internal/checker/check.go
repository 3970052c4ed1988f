package checker

import (
	"fmt"
	"sort"
	"strings"
)

// Options choose what counts as a violation.
type Options struct {
	// Readers that must each receive every acked message. Empty means every
	// reader seen in the history.
	Readers []string
	// AllowDuplicates accepts a message delivered more than once to a reader
	// at QoS 0 or with no QoS recorded; they are still counted. QoS 1
	// redeliveries are always allowed and QoS 2 duplicates never are.
	AllowDuplicates bool
}

// Report is the verdict on a history.
type Report struct {
	Invoked, Acked, Failed, Delivered int
	// Unknown counts publishes that ended without an answer (Unknown events).
	Unknown int
	// Lost: acked, never delivered to a reader that should have it.
	Lost []Miss
	// LostBy classifies Lost per publisher; see LostClasses.
	LostBy map[string]LostClasses
	// Unexpected: delivered but never invoked (or its invoke named another topic).
	Unexpected []Miss
	// Duplicates: delivered more than once to one reader, at any QoS.
	Duplicates []Miss
	// Redeliveries counts the Duplicates delivered at QoS 1, which MQTT
	// allows (at least once).
	Redeliveries int
	// QoS2Duplicates are the Duplicates where either delivery was at QoS 2
	// (exactly once): never allowed.
	QoS2Duplicates []Miss
	// OrderViolations: per (reader, publisher, topic), a first delivery with a
	// lower sequence number after a higher one.
	OrderViolations []Miss
	// Recovered: invoked with an unknown outcome (no ack, no fail) yet delivered.
	Recovered int
	// Suppressed counts QoS 2 resends a reader suppressed (Suppress events).
	Suppressed int
	// RetainedMissing: a subscription made after a retained publish to a
	// topic was acked, yet no retained message arrived for it. ID is the
	// last acked retained publish.
	RetainedMissing []Miss
	// RetainedWrong: a retained message arrived for a subscription that is
	// not a value the topic can hold then: superseded by a later acked
	// retained publish, or never published as retained there.
	RetainedWrong []Miss
	// SessionsLost: a reader reconnected without clean start and CONNACK
	// said Session Present 0, after an earlier connection in the history.
	SessionsLost []Miss
	// Violations are the protocol violations readers reported.
	Violations []string
	// Faults counts injected faults (Fault events).
	Faults int

	// otherDups are the Duplicates at QoS 0 or without a QoS.
	otherDups []Miss
}

// Miss is one message with the reader it concerns.
type Miss struct {
	ID     ID
	Topic  string
	Reader string
	// Class is set for Lost: LostPrefix, LostMiddle, LostPostfix or LostAll.
	Class string
}

func (m Miss) String() string {
	if m.ID == (ID{}) && m.Topic == "" {
		return m.Reader
	}
	s := fmt.Sprintf("%s on %q at %s", m.ID, m.Topic, m.Reader)
	if m.Class != "" {
		s += " (" + m.Class + ")"
	}
	return s
}

// OK reports whether nothing was lost, unexpected, out of order, duplicated
// at QoS 2 (or, unless allowed, at QoS 0), wrongly retained, and whether no
// session was lost and no protocol violation seen.
func (r Report) OK(opts Options) bool {
	return len(r.Lost) == 0 && len(r.Unexpected) == 0 && len(r.OrderViolations) == 0 &&
		len(r.QoS2Duplicates) == 0 && (opts.AllowDuplicates || r.otherDuplicates() == 0) &&
		len(r.RetainedMissing) == 0 && len(r.RetainedWrong) == 0 &&
		len(r.SessionsLost) == 0 && len(r.Violations) == 0
}

// otherDuplicates counts duplicates that are neither QoS 1 nor QoS 2.
func (r Report) otherDuplicates() int {
	return len(r.otherDups)
}

// String summarises the report, naming up to five examples of each problem.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invoked=%d acked=%d failed=%d unknown=%d delivered=%d recovered=%d lost=%d unexpected=%d duplicates=%d (qos1=%d qos2=%d) suppressed=%d order=%d",
		r.Invoked, r.Acked, r.Failed, r.Unknown, r.Delivered, r.Recovered, len(r.Lost), len(r.Unexpected),
		len(r.Duplicates), r.Redeliveries, len(r.QoS2Duplicates), r.Suppressed, len(r.OrderViolations))
	if n := len(r.RetainedMissing) + len(r.RetainedWrong); n > 0 {
		fmt.Fprintf(&b, " retained-missing=%d retained-wrong=%d", len(r.RetainedMissing), len(r.RetainedWrong))
	}
	if len(r.SessionsLost) > 0 || len(r.Violations) > 0 {
		fmt.Fprintf(&b, " sessions-lost=%d violations=%d", len(r.SessionsLost), len(r.Violations))
	}
	pubs := make([]string, 0, len(r.LostBy))
	for p := range r.LostBy {
		pubs = append(pubs, p)
	}
	sort.Strings(pubs)
	for _, p := range pubs {
		fmt.Fprintf(&b, "\n  lost from %s: %s", p, r.LostBy[p])
	}
	for _, p := range []struct {
		name  string
		items []Miss
	}{{"lost", r.Lost}, {"unexpected", r.Unexpected}, {"qos2 duplicate", r.QoS2Duplicates}, {"duplicate", r.otherDups},
		{"order", r.OrderViolations}, {"retained missing", r.RetainedMissing}, {"retained wrong", r.RetainedWrong},
		{"session lost", r.SessionsLost}} {
		for i, m := range p.items {
			if i == 5 {
				fmt.Fprintf(&b, "\n  %s: ... %d more", p.name, len(p.items)-5)
				break
			}
			fmt.Fprintf(&b, "\n  %s: %s", p.name, m)
		}
	}
	for i, v := range r.Violations {
		if i == 5 {
			fmt.Fprintf(&b, "\n  violation: ... %d more", len(r.Violations)-5)
			break
		}
		fmt.Fprintf(&b, "\n  violation: %s", v)
	}
	return b.String()
}

// pubState is what the history says about one message.
type pubState struct {
	topic         string
	qos           int
	retain        bool
	invoked       bool
	invokeAt      int // index of the Invoke event
	ackAt         int // index of the Ack event, or -1
	acked, failed bool
}

// dkey is a (reader, message) pair.
type dkey struct {
	reader string
	id     ID
}

// Check judges a history.
func Check(events []Event, opts Options) Report {
	var r Report
	pubs := map[ID]*pubState{}
	readers := map[string]bool{}
	firstQoS := map[dkey]int{}
	delivered := map[string]map[ID]int{} // reader -> id -> count of non-retained deliveries
	lastSeq := map[[3]string]uint64{}    // (reader, publisher, topic) -> highest first-delivered seq
	subs := newSubscriptions()
	ret := newRetainedLog()
	state := func(id ID) *pubState {
		p := pubs[id]
		if p == nil {
			p = &pubState{ackAt: -1}
			pubs[id] = p
		}
		return p
	}
	for i, e := range events {
		id := ID{e.Publisher, e.Seq}
		switch e.Kind {
		case Invoke:
			r.Invoked++
			p := state(id)
			p.invoked, p.topic, p.qos, p.retain, p.invokeAt = true, e.Topic, e.QoS, e.Retain, i
		case Ack:
			r.Acked++
			p := state(id)
			p.acked, p.ackAt = true, i
		case Fail:
			r.Failed++
			state(id).failed = true
		case Unknown:
			r.Unknown++
		case Suppress:
			r.Suppressed++
		case Fault:
			r.Faults++
		case Violation:
			r.Violations = append(r.Violations, e.Reader+": "+e.Err)
		case Subscribe:
			subs.subscribe(i, e)
			ret.subscribe(i, e)
		case Connack:
			if e.Reader != "" && subs.connack(i, e) {
				r.SessionsLost = append(r.SessionsLost, Miss{Reader: e.Reader})
			}
		case Deliver:
			r.Delivered++
			if !e.Retain {
				readers[e.Reader] = true
			}
			p := pubs[id]
			if p == nil || !p.invoked || p.topic != e.Topic {
				r.Unexpected = append(r.Unexpected, Miss{ID: id, Topic: e.Topic, Reader: e.Reader})
				continue
			}
			if e.Retain {
				// A retained message sent for a subscription is judged by
				// the retained verdict alone: it may repeat a message the
				// reader had live, and comes out of order by nature.
				ret.deliver(i, e)
				continue
			}
			if delivered[e.Reader] == nil {
				delivered[e.Reader] = map[ID]int{}
			}
			delivered[e.Reader][id]++
			k := dkey{e.Reader, id}
			if delivered[e.Reader][id] > 1 {
				m := Miss{ID: id, Topic: e.Topic, Reader: e.Reader}
				r.Duplicates = append(r.Duplicates, m)
				switch {
				case e.QoS == 2 || firstQoS[k] == 2:
					r.QoS2Duplicates = append(r.QoS2Duplicates, m)
				case e.QoS == 1:
					r.Redeliveries++
				default:
					r.otherDups = append(r.otherDups, m)
				}
				continue
			}
			firstQoS[k] = e.QoS
			sk := [3]string{e.Reader, e.Publisher, e.Topic}
			if last, ok := lastSeq[sk]; ok && e.Seq < last {
				r.OrderViolations = append(r.OrderViolations, Miss{ID: id, Topic: e.Topic, Reader: e.Reader})
			} else {
				lastSeq[sk] = e.Seq
			}
		}
	}
	want := opts.Readers
	if len(want) == 0 {
		for rd := range readers {
			want = append(want, rd)
		}
		sort.Strings(want)
	}
	ids := make([]ID, 0, len(pubs))
	for id := range pubs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].Publisher != ids[j].Publisher {
			return ids[i].Publisher < ids[j].Publisher
		}
		return ids[i].Seq < ids[j].Seq
	})
	recovered := map[ID]bool{}
	for _, id := range ids {
		p := pubs[id]
		for _, rd := range want {
			got := delivered[rd][id] > 0
			if p.acked && !got && subs.expects(rd, p) {
				r.Lost = append(r.Lost, Miss{ID: id, Topic: p.topic, Reader: rd})
			}
			if got && !p.acked && !p.failed {
				recovered[id] = true
			}
		}
	}
	r.Recovered = len(recovered)
	r.LostBy = classifyLost(r.Lost, delivered)
	r.RetainedMissing, r.RetainedWrong = ret.judge(pubs)
	return r
}
