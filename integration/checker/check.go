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
	// (MQTT QoS 1 permits it); they are still counted.
	AllowDuplicates bool
}

// Report is the verdict on a history.
type Report struct {
	Invoked, Acked, Failed, Delivered int
	// Lost: acked, never delivered to a reader that should have it.
	Lost []Miss
	// Unexpected: delivered but never invoked (or its invoke named another topic).
	Unexpected []Miss
	// Duplicates: delivered more than once to one reader.
	Duplicates []Miss
	// OrderViolations: per (reader, publisher, topic), a first delivery with a
	// lower sequence number after a higher one.
	OrderViolations []Miss
	// Recovered: invoked with an unknown outcome (no ack, no fail) yet delivered.
	Recovered int
}

// Miss is one message with the reader it concerns.
type Miss struct {
	ID     ID
	Topic  string
	Reader string
}

func (m Miss) String() string { return fmt.Sprintf("%s on %q at %s", m.ID, m.Topic, m.Reader) }

// OK reports whether nothing was lost, unexpected, out of order, or (unless
// allowed) duplicated.
func (r Report) OK(opts Options) bool {
	return len(r.Lost) == 0 && len(r.Unexpected) == 0 && len(r.OrderViolations) == 0 &&
		(opts.AllowDuplicates || len(r.Duplicates) == 0)
}

// String summarises the report, naming up to five examples of each problem.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invoked=%d acked=%d failed=%d delivered=%d recovered=%d lost=%d unexpected=%d duplicates=%d order=%d",
		r.Invoked, r.Acked, r.Failed, r.Delivered, r.Recovered, len(r.Lost), len(r.Unexpected), len(r.Duplicates), len(r.OrderViolations))
	for _, p := range []struct {
		name  string
		items []Miss
	}{{"lost", r.Lost}, {"unexpected", r.Unexpected}, {"duplicate", r.Duplicates}, {"order", r.OrderViolations}} {
		for i, m := range p.items {
			if i == 5 {
				fmt.Fprintf(&b, "\n  %s: ... %d more", p.name, len(p.items)-5)
				break
			}
			fmt.Fprintf(&b, "\n  %s: %s", p.name, m)
		}
	}
	return b.String()
}

// Check judges a history.
func Check(events []Event, opts Options) Report {
	type pubState struct {
		topic         string
		acked, failed bool
		invoked       bool
	}
	var r Report
	pubs := map[ID]*pubState{}
	readers := map[string]bool{}
	delivered := map[string]map[ID]int{} // reader -> id -> count
	lastSeq := map[[3]string]uint64{}    // (reader, publisher, topic) -> highest first-delivered seq
	state := func(id ID) *pubState {
		p := pubs[id]
		if p == nil {
			p = &pubState{}
			pubs[id] = p
		}
		return p
	}
	for _, e := range events {
		id := ID{e.Publisher, e.Seq}
		switch e.Kind {
		case Invoke:
			r.Invoked++
			p := state(id)
			p.invoked, p.topic = true, e.Topic
		case Ack:
			r.Acked++
			state(id).acked = true
		case Fail:
			r.Failed++
			state(id).failed = true
		case Deliver:
			r.Delivered++
			readers[e.Reader] = true
			p := pubs[id]
			if p == nil || !p.invoked || p.topic != e.Topic {
				r.Unexpected = append(r.Unexpected, Miss{id, e.Topic, e.Reader})
				continue
			}
			if delivered[e.Reader] == nil {
				delivered[e.Reader] = map[ID]int{}
			}
			delivered[e.Reader][id]++
			if delivered[e.Reader][id] > 1 {
				r.Duplicates = append(r.Duplicates, Miss{id, e.Topic, e.Reader})
				continue
			}
			k := [3]string{e.Reader, e.Publisher, e.Topic}
			if last, ok := lastSeq[k]; ok && e.Seq < last {
				r.OrderViolations = append(r.OrderViolations, Miss{id, e.Topic, e.Reader})
			} else {
				lastSeq[k] = e.Seq
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
			if p.acked && !got {
				r.Lost = append(r.Lost, Miss{id, p.topic, rd})
			}
			if got && !p.acked && !p.failed {
				recovered[id] = true
			}
		}
	}
	r.Recovered = len(recovered)
	return r
}
