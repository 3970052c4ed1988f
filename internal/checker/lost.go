package checker

import "fmt"

// Where a lost message sits among what its reader received from the same
// publisher (Miss.Class). Each points at a different failure: a prefix is
// lost before the reader's session caught the stream (subscription or
// session set up late), a middle loss is a hole in a stream that otherwise
// arrived (the worst kind: something dropped a message it had stored or
// was forwarding), and a postfix is the tail missing at the end (a crash
// that lost the last writes, or a run that stopped before delivery
// finished).
const (
	// LostPrefix: sequence below every one delivered from the publisher.
	LostPrefix = "lost-prefix"
	// LostMiddle: between the lowest and highest delivered.
	LostMiddle = "lost-middle"
	// LostPostfix: above every one delivered.
	LostPostfix = "lost-postfix"
	// LostAll: nothing from the publisher reached the reader.
	LostAll = "lost-all"
)

// LostClasses counts a publisher's lost messages by class, over all
// readers (one count per reader that lost the message).
type LostClasses struct {
	Prefix, Middle, Postfix, All int
}

func (c LostClasses) String() string {
	return fmt.Sprintf("prefix=%d middle=%d postfix=%d all=%d", c.Prefix, c.Middle, c.Postfix, c.All)
}

// classifyLost sets each lost message's Class from the range of sequence
// numbers its reader received from its publisher, and counts them per
// publisher. It returns nil when nothing was lost.
func classifyLost(lost []Miss, delivered map[string]map[ID]int) map[string]LostClasses {
	if len(lost) == 0 {
		return nil
	}
	type rp struct{ reader, publisher string }
	type span struct{ lo, hi uint64 }
	spans := map[rp]span{}
	for rd, ids := range delivered {
		for id := range ids {
			k := rp{rd, id.Publisher}
			sp, ok := spans[k]
			if !ok {
				sp = span{id.Seq, id.Seq}
			}
			sp.lo, sp.hi = min(sp.lo, id.Seq), max(sp.hi, id.Seq)
			spans[k] = sp
		}
	}
	by := map[string]LostClasses{}
	for i := range lost {
		m := &lost[i]
		c := by[m.ID.Publisher]
		sp, ok := spans[rp{m.Reader, m.ID.Publisher}]
		switch {
		case !ok:
			m.Class = LostAll
			c.All++
		case m.ID.Seq < sp.lo:
			m.Class = LostPrefix
			c.Prefix++
		case m.ID.Seq > sp.hi:
			m.Class = LostPostfix
			c.Postfix++
		default:
			m.Class = LostMiddle
			c.Middle++
		}
		by[m.ID.Publisher] = c
	}
	return by
}
