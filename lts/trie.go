package lts

import (
	"fmt"
	"strings"
)

// StateID identifies a trie state. Only the low 8*TopicIndexBytes bits are
// used. The id of an end-of-topic state is a static index: it names a
// stream and is the first field of every key of that stream.
type StateID uint64

// LabelKind is the kind of a trie edge's label. Its numeric values are part
// of the edge record format and of state id derivation; they never change.
type LabelKind uint8

const (
	// KindLevel is a concrete topic level; the edge's Label holds it (it
	// may be empty: MQTT allows empty levels).
	KindLevel LabelKind = 0
	// KindPlus is the learned wildcard: the level is varying.
	KindPlus LabelKind = 1
	// KindEnd is the end-of-topic marker; its target is a static index.
	KindEnd LabelKind = 2

	// Kinds used only to derive the ids of the two roots.
	kindRootPlain  LabelKind = 0x80
	kindRootDollar LabelKind = 0x81
)

// String returns "level", "+" or "end".
func (k LabelKind) String() string {
	switch k {
	case KindLevel:
		return "level"
	case KindPlus:
		return "+"
	case KindEnd:
		return "end"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Edge is one learned trie edge: Parent --(Kind, Label)--> Child. Edges are
// what a trie persists (see AppendEdgeRecord) and what Restore rebuilds a
// trie from.
type Edge struct {
	// Parent is the id of the state the edge leaves.
	Parent StateID
	// Kind is the kind of label.
	Kind LabelKind
	// Label is the topic level for KindLevel, empty otherwise.
	Label string
	// Child is the id of the state the edge leads to.
	Child StateID
	// Rehash is the attempt number that gave Child its id (almost always
	// 0; larger when the first candidate ids already belonged to other
	// states).
	Rehash uint32
}

// String renders e for logs and test output.
func (e Edge) String() string {
	l := e.Kind.String()
	if e.Kind == KindLevel {
		l = fmt.Sprintf("%q", e.Label)
	}
	s := fmt.Sprintf("%08x -%s-> %08x", uint64(e.Parent), l, uint64(e.Child))
	if e.Rehash != 0 {
		s += fmt.Sprintf(" (rehash %d)", e.Rehash)
	}
	return s
}

// Learned is the result of learning or looking up a topic name.
type Learned struct {
	// Static is the topic's static index (the id of its end-of-topic
	// state).
	Static StateID
	// Varying holds the topic's levels at the '+' positions of its learned
	// structure, in order. They alias the caller's level strings.
	Varying []string
	// NewEdges are the edges this call added to the trie, in the order
	// they were added. They must be persisted with the data that needed
	// them. Empty for Lookup and for an already known path.
	NewEdges []Edge
}

// Stats describes a trie's size, for metrics and dstool.
type Stats struct {
	// States counts all states, the two roots included.
	States int
	// Streams counts static indexes (end-of-topic states).
	Streams int
	// AtCapacity is true once States >= Config.MaxTrieStates: from then on
	// new concrete values are learned as varying.
	AtCapacity bool
	// CappedEdges counts the '+' edges this trie object added because of
	// the cap (not persisted: it restarts at 0 after Restore).
	CappedEdges uint64
}

// state is one trie node.
type state struct {
	id     StateID
	parent *state
	kind   LabelKind
	label  string
	rehash uint32
	// depth is the number of topic levels consumed to reach the state
	// (roots 0; an end state has the depth of its parent).
	depth    int
	concrete []*state // KindLevel children, in insertion order
	plus     *state
	end      *state
}

// edgeKey looks up a concrete edge.
type edgeKey struct {
	parent StateID
	label  string
}

// maxRehash bounds the attempts to find a free id for one new state.
const maxRehash = 4096

// Trie is a learned topic structure: it maps topic names to (static index,
// varying levels) and topic filters to the streams that may hold matching
// topics. See the package documentation for the algorithm.
//
// A Trie is not safe for concurrent use. Lookup, Match, Structure, Statics,
// Edges and Stats only read, so a caller may guard a Trie with a
// sync.RWMutex and run those under the read lock.
type Trie struct {
	cfg         Config
	roots       [2]*state // plain, dollar
	byID        map[StateID]*state
	edges       map[edgeKey]*state // concrete edges only
	streams     int
	cappedEdges uint64
}

// NewTrie returns an empty trie (just the two roots) for cfg. It uses
// TopicIndexBytes, WildcardThresholds and MaxTrieStates.
func NewTrie(cfg Config) (*Trie, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trie{
		cfg:   cfg.Clone(),
		byID:  make(map[StateID]*state),
		edges: make(map[edgeKey]*state),
	}
	for i, kind := range []LabelKind{kindRootPlain, kindRootDollar} {
		id, rehash, err := t.allocID(0, kind, "")
		if err != nil {
			return nil, err
		}
		t.roots[i] = &state{id: id, kind: kind, rehash: rehash}
		t.byID[id] = t.roots[i]
	}
	return t, nil
}

// Config returns a copy of the trie's configuration.
func (t *Trie) Config() Config { return t.cfg.Clone() }

// Stats returns the trie's size counters.
func (t *Trie) Stats() Stats {
	return Stats{
		States:      len(t.byID),
		Streams:     t.streams,
		AtCapacity:  len(t.byID) >= t.cfg.MaxTrieStates,
		CappedEdges: t.cappedEdges,
	}
}

// rootFor returns the root for a topic or filter whose first level is
// first: topics starting with '$' live under their own root.
func (t *Trie) rootFor(first string) *state {
	if len(first) > 0 && first[0] == '$' {
		return t.roots[1]
	}
	return t.roots[0]
}

// allocID finds the id of a new state: the first rehash attempt whose hash
// is not already taken.
func (t *Trie) allocID(parent StateID, kind LabelKind, label string) (StateID, uint32, error) {
	if uint64(len(t.byID)) >= uint64(1)<<(8*uint(t.cfg.TopicIndexBytes)-1) && t.cfg.TopicIndexBytes < 8 {
		// More than half the id space is used: refuse rather than
		// probe for long.
		return 0, 0, fmt.Errorf("%w: %d states with %d-byte ids", ErrIDSpaceExhausted, len(t.byID), t.cfg.TopicIndexBytes)
	}
	for r := uint32(0); r < maxRehash; r++ {
		id := stateIDHash(parent, kind, r, label, t.cfg.TopicIndexBytes)
		if _, taken := t.byID[id]; !taken {
			return id, r, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: no free id after %d attempts", ErrIDSpaceExhausted, maxRehash)
}

// addChild creates a child of s. It does not check that the edge is new.
func (t *Trie) addChild(s *state, kind LabelKind, label string) (*state, error) {
	id, rehash, err := t.allocID(s.id, kind, label)
	if err != nil {
		return nil, err
	}
	c := &state{id: id, parent: s, kind: kind, label: label, rehash: rehash, depth: s.depth}
	t.link(c)
	return c, nil
}

// link attaches c to its parent and to the indexes.
func (t *Trie) link(c *state) {
	s := c.parent
	switch c.kind {
	case KindLevel:
		c.depth = s.depth + 1
		s.concrete = append(s.concrete, c)
		t.edges[edgeKey{s.id, c.label}] = c
	case KindPlus:
		c.depth = s.depth + 1
		s.plus = c
	case KindEnd:
		c.depth = s.depth
		s.end = c
		t.streams++
	default:
		// Invariant: addChild and Restore (which checks e.Kind) link only
		// Level, Plus and End states.
		panic(fmt.Sprintf("lts: link of a state of kind %v", c.kind))
	}
	t.byID[c.id] = c
}

// unlink undoes link for the most recently linked child of its parent.
func (t *Trie) unlink(c *state) {
	s := c.parent
	switch c.kind {
	case KindLevel:
		s.concrete = s.concrete[:len(s.concrete)-1]
		delete(t.edges, edgeKey{s.id, c.label})
	case KindPlus:
		s.plus = nil
	case KindEnd:
		s.end = nil
		t.streams--
	}
	delete(t.byID, c.id)
}

// smallFanout is the number of concrete children up to which child scans
// them instead of using the edge map: cheaper, and kinder to the cache.
const smallFanout = 16

// child returns the concrete child of s labelled label, or nil.
func (t *Trie) child(s *state, label string) *state {
	if len(s.concrete) <= smallFanout {
		for _, c := range s.concrete {
			if c.label == label {
				return c
			}
		}
		return nil
	}
	return t.edges[edgeKey{s.id, label}]
}

func (c *state) edge() Edge {
	return Edge{Parent: c.parent.id, Kind: c.kind, Label: c.label, Child: c.id, Rehash: c.rehash}
}

// Learn maps a topic name, split into levels (SplitTopic), to its static
// index and varying levels, adding to the trie what the topic needs:
//
//   - an existing concrete edge for the level is followed; otherwise an
//     existing '+' edge is followed and the level becomes varying;
//   - otherwise, if the threshold for this depth is 0 or the trie is at
//     capacity, a '+' edge is added and followed;
//   - otherwise a concrete edge is added, and if the state now has at least
//     threshold concrete children a '+' edge is added as well, for later
//     new values.
//
// The answer for a topic never changes once it has been learned. Learn does
// not validate the levels (use ValidateTopicName); a topic whose first
// level starts with '$' is learned under the separate '$' root. On error
// (ErrEmptyTopic for no levels, ErrIDSpaceExhausted) the trie is unchanged.
func (t *Trie) Learn(levels []string) (Learned, error) {
	if len(levels) == 0 {
		return Learned{}, ErrEmptyTopic
	}
	var res Learned
	var capped uint64
	s := t.rootFor(levels[0])
	fail := func(err error) (Learned, error) {
		// Roll back in reverse order so the trie is unchanged.
		for i := len(res.NewEdges) - 1; i >= 0; i-- {
			t.unlink(t.byID[res.NewEdges[i].Child])
		}
		return Learned{}, err
	}
	add := func(s *state, kind LabelKind, label string) (*state, error) {
		c, err := t.addChild(s, kind, label)
		if err == nil {
			res.NewEdges = append(res.NewEdges, c.edge())
		}
		return c, err
	}
	for _, lv := range levels {
		if c := t.child(s, lv); c != nil {
			s = c
			continue
		}
		if s.plus == nil {
			th := t.cfg.threshold(s.depth)
			if th > 0 && len(t.byID) < t.cfg.MaxTrieStates {
				// Clone: lv may point into a large buffer (a decoded
				// packet) that the trie must not keep alive.
				c, err := add(s, KindLevel, strings.Clone(lv))
				if err != nil {
					return fail(err)
				}
				if len(s.concrete) >= th {
					if _, err := add(s, KindPlus, ""); err != nil {
						return fail(err)
					}
				}
				s = c
				continue
			}
			if th > 0 {
				capped++
			}
			if _, err := add(s, KindPlus, ""); err != nil {
				return fail(err)
			}
		}
		res.Varying = append(res.Varying, lv)
		s = s.plus
	}
	if s.end == nil {
		if _, err := add(s, KindEnd, ""); err != nil {
			return fail(err)
		}
	}
	t.cappedEdges += capped
	res.Static = s.end.id
	return res, nil
}

// Lookup is Learn without learning: it reports the static index and varying
// levels the topic has, or would have if its path existed, and false when
// the path is not in the trie. It never changes the trie.
func (t *Trie) Lookup(levels []string) (Learned, bool) {
	if len(levels) == 0 {
		return Learned{}, false
	}
	var res Learned
	s := t.rootFor(levels[0])
	for _, lv := range levels {
		if c := t.child(s, lv); c != nil {
			s = c
			continue
		}
		if s.plus == nil {
			return Learned{}, false
		}
		res.Varying = append(res.Varying, lv)
		s = s.plus
	}
	if s.end == nil {
		return Learned{}, false
	}
	res.Static = s.end.id
	return res, true
}
