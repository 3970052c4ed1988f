package lts

import (
	"slices"
	"strconv"
)

// Constraint restricts one varying level of a stream, as derived from a
// topic filter: either any value ('+', or a level covered by '#'), or one
// exact value (a concrete filter level that met a learned '+').
type Constraint struct {
	// Any is true when the level may hold any value.
	Any bool
	// Value is the required level when Any is false.
	Value string
}

// Any returns the constraint that accepts every value.
func Any() Constraint { return Constraint{Any: true} }

// Equal returns the constraint that accepts only v.
func Equal(v string) Constraint { return Constraint{Value: v} }

// String renders c as "+" or as a quoted value.
func (c Constraint) String() string {
	if c.Any {
		return "+"
	}
	return strconv.Quote(c.Value)
}

// Match is one stream that may hold topics matching a filter, with what the
// filter says about the stream's varying levels.
type Match struct {
	// Static is the stream's static index.
	Static StateID
	// Varying has one constraint per varying level of the stream.
	Varying []Constraint
}

// Match returns the streams that can hold topic names matching the filter
// (split into levels with SplitTopic), sorted by static index. Only paths
// that exist in the trie are returned. At each trie state, a concrete
// filter level follows its own edge and the '+' edge (as Equal); a '+'
// follows every level edge and the '+' edge (as Any); '#' takes the whole
// subtree, this state's own end included ("a/#" matches "a"); the end of the
// filter takes only the end edge. A filter whose first level starts with
// '$' searches only the '$' root; any other filter, in particular one that
// starts with '+' or '#', searches only the plain root [MQTT-4.7.2-1].
//
// Every topic the filter matches is in one of the results and satisfies its
// constraints; the converse does not hold for keys (hash collisions), so
// readers re-check the real topic with MatchTopic. The filter is assumed
// valid (ValidateTopicFilter); for an invalid one the result is unspecified
// but Match does not panic.
func (t *Trie) Match(filter []string) []Match {
	if len(filter) == 0 {
		return nil
	}
	m := matcher{t: t, filter: filter}
	m.walk(t.rootFor(filter[0]), 0)
	slices.SortFunc(m.out, func(a, b Match) int {
		switch {
		case a.Static < b.Static:
			return -1
		case a.Static > b.Static:
			return 1
		}
		return 0
	})
	return m.out
}

type matcher struct {
	t      *Trie
	filter []string
	stack  []Constraint
	out    []Match
}

func (m *matcher) emit(end *state) {
	m.out = append(m.out, Match{Static: end.id, Varying: slices.Clone(m.stack)})
}

func (m *matcher) walk(s *state, i int) {
	if i == len(m.filter) {
		if s.end != nil {
			m.emit(s.end)
		}
		return
	}
	switch f := m.filter[i]; f {
	case "#":
		m.subtree(s)
	case "+":
		for _, c := range s.concrete {
			m.walk(c, i+1)
		}
		if s.plus != nil {
			m.stack = append(m.stack, Any())
			m.walk(s.plus, i+1)
			m.stack = m.stack[:len(m.stack)-1]
		}
	default:
		if c := m.t.child(s, f); c != nil {
			m.walk(c, i+1)
		}
		if s.plus != nil {
			m.stack = append(m.stack, Equal(f))
			m.walk(s.plus, i+1)
			m.stack = m.stack[:len(m.stack)-1]
		}
	}
}

// subtree emits every end state under s, s's own end included.
func (m *matcher) subtree(s *state) {
	if s.end != nil {
		m.emit(s.end)
	}
	for _, c := range s.concrete {
		m.subtree(c)
	}
	if s.plus != nil {
		m.stack = append(m.stack, Any())
		m.subtree(s.plus)
		m.stack = m.stack[:len(m.stack)-1]
	}
}
