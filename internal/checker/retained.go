package checker

import "sort"

// retSub is a Subscribe event, for the retained verdict.
type retSub struct {
	at     int
	filter string
}

// retDelivery is a Deliver event with Retain set.
type retDelivery struct {
	at    int
	topic string
	id    ID
}

// retainedLog collects what the retained verdict needs. The model: a topic
// holds the value of a retained publish; a subscription is sent the value
// the topic holds when the server processes it (Retain Handling 0 is
// assumed). A retained publish P is superseded once a later retained
// publish Q to the same topic was invoked after P was acked and Q was acked
// itself. So when a reader subscribes (the Subscribe event, recorded before
// the SUBSCRIBE goes out):
//
//   - if a retained publish to a matching topic was acked before, the reader
//     must get a retained message for that topic (else RetainedMissing);
//   - what it gets must be a retained publish to that topic, invoked before
//     it arrived, not refused, and not superseded by acks before the
//     subscription (else RetainedWrong). Unacked and concurrent publishes
//     are allowed values: their order at the server is unknown.
//
// Retained publishes with an empty payload (which clear the topic) are not
// modelled, nor Retain As Published (which sets RETAIN on live messages).
// Readers without Subscribe events are not judged.
type retainedLog struct {
	subs       map[string][]retSub
	deliveries map[string][]retDelivery
}

func newRetainedLog() *retainedLog {
	return &retainedLog{subs: map[string][]retSub{}, deliveries: map[string][]retDelivery{}}
}

func (l *retainedLog) subscribe(i int, e Event) {
	l.subs[e.Reader] = append(l.subs[e.Reader], retSub{at: i, filter: e.Topic})
}

func (l *retainedLog) deliver(i int, e Event) {
	l.deliveries[e.Reader] = append(l.deliveries[e.Reader], retDelivery{at: i, topic: e.Topic, id: ID{e.Publisher, e.Seq}})
}

// judge returns the RetainedMissing and RetainedWrong verdicts.
func (l *retainedLog) judge(pubs map[ID]*pubState) (missing, wrong []Miss) {
	byTopic := map[string][]ID{} // retained publishes per topic
	for id, p := range pubs {
		if p.invoked && p.retain {
			byTopic[p.topic] = append(byTopic[p.topic], id)
		}
	}
	readers := make([]string, 0, len(l.subs))
	for rd := range l.subs {
		readers = append(readers, rd)
	}
	sort.Strings(readers)
	for _, rd := range readers {
		subs := l.subs[rd]
		for si, s := range subs {
			topics := map[string]bool{}
			for t := range byTopic {
				if Match(s.filter, t) {
					topics[t] = true
				}
			}
			for _, d := range l.deliveries[rd] {
				if d.at > s.at && Match(s.filter, d.topic) {
					topics[d.topic] = true
				}
			}
			for _, t := range sortedKeys(topics) {
				end := windowEnd(subs[si+1:], t)
				m, w := judgeOne(rd, s.at, end, t, byTopic[t], pubs, l.deliveries[rd])
				missing = append(missing, m...)
				wrong = append(wrong, w...)
			}
		}
	}
	return missing, wrong
}

// windowEnd is the index of the reader's next subscription matching topic,
// which starts a new retained window, or beyond every event.
func windowEnd(later []retSub, topic string) int {
	for _, s := range later {
		if Match(s.filter, topic) {
			return s.at
		}
	}
	return int(^uint(0) >> 1)
}

// judgeOne judges the retained message reader got for topic from the
// subscription at index at (up to end).
func judgeOne(reader string, at, end int, topic string, retained []ID, pubs map[ID]*pubState, ds []retDelivery) (missing, wrong []Miss) {
	var lastAcked *ID
	var ackedBefore []*pubState
	for i, id := range retained {
		p := pubs[id]
		if p.acked && p.ackAt < at {
			ackedBefore = append(ackedBefore, p)
			if lastAcked == nil || p.ackAt > pubs[*lastAcked].ackAt {
				lastAcked = &retained[i]
			}
		}
	}
	var got *retDelivery
	for i, d := range ds {
		if d.at > at && d.at < end && d.topic == topic {
			got = &ds[i]
			break
		}
	}
	if got == nil {
		if lastAcked != nil {
			missing = append(missing, Miss{ID: *lastAcked, Topic: topic, Reader: reader})
		}
		return missing, nil
	}
	p := pubs[got.id]
	ok := p != nil && p.invoked && p.retain && p.topic == topic && !p.failed && p.invokeAt < got.at
	for _, q := range ackedBefore {
		if ok && p.acked && q.invokeAt > p.ackAt {
			ok = false // superseded
		}
	}
	if !ok {
		wrong = append(wrong, Miss{ID: got.id, Topic: topic, Reader: reader})
	}
	return nil, wrong
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
