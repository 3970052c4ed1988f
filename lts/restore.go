package lts

import (
	"cmp"
	"fmt"
	"slices"
)

// Restore rebuilds a trie from its persisted edges, given in any order. The
// result has exactly the ids, static indexes and learning state of the trie
// that produced the edges, so every topic maps to the same key as before.
// Restore checks that the edges form one trie under the two roots: every id
// is derived from its (parent, kind, label, rehash) by the id hash, no id or
// edge appears twice, every parent is reachable, end states have no
// children. Errors wrap ErrCorruption (or ErrInvalidConfig for cfg).
func Restore(cfg Config, edges []Edge) (*Trie, error) {
	t, err := NewTrie(cfg)
	if err != nil {
		return nil, err
	}
	corrupt := func(format string, args ...any) (*Trie, error) {
		return nil, fmt.Errorf("%w: trie restore: "+format, append([]any{ErrCorruption}, args...)...)
	}
	w := cfg.TopicIndexBytes
	limit := uint64(1) << (8 * uint(w) % 64)
	byParent := make(map[StateID][]Edge)
	children := make(map[StateID]struct{}, len(edges))
	for _, e := range edges {
		if w < 8 && (uint64(e.Parent) >= limit || uint64(e.Child) >= limit) {
			return corrupt("edge %v: id wider than %d bytes", e, w)
		}
		if e.Kind > KindEnd || (e.Kind != KindLevel && e.Label != "") {
			return corrupt("edge %v: bad kind or label", e)
		}
		if got := stateIDHash(e.Parent, e.Kind, e.Rehash, e.Label, w); got != e.Child {
			return corrupt("edge %v: child id should be %08x", e, uint64(got))
		}
		if _, dup := children[e.Child]; dup {
			return corrupt("edge %v: child id used twice", e)
		}
		if _, root := t.byID[e.Child]; root {
			return corrupt("edge %v: child id is a root", e)
		}
		children[e.Child] = struct{}{}
		byParent[e.Parent] = append(byParent[e.Parent], e)
	}
	// Attach breadth-first from the roots, children in canonical order,
	// so the restored trie does not depend on the order of edges.
	queue := []*state{t.roots[0], t.roots[1]}
	attached := 0
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		es := byParent[s.id]
		slices.SortFunc(es, compareEdges)
		for _, e := range es {
			if s.kind == KindEnd {
				return corrupt("edge %v: leaves an end state", e)
			}
			if (e.Kind == KindPlus && s.plus != nil) || (e.Kind == KindEnd && s.end != nil) {
				return corrupt("edge %v: second %v edge of a state", e, e.Kind)
			}
			if e.Kind == KindLevel && t.edges[edgeKey{s.id, e.Label}] != nil {
				return corrupt("edge %v: label appears twice", e)
			}
			c := &state{id: e.Child, parent: s, kind: e.Kind, label: e.Label, rehash: e.Rehash}
			t.link(c)
			queue = append(queue, c)
			attached++
		}
	}
	if attached != len(edges) {
		return corrupt("%d of %d edges are not reachable from the roots", len(edges)-attached, len(edges))
	}
	return t, nil
}

// compareEdges orders edges by kind, then label.
func compareEdges(a, b Edge) int {
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return cmp.Compare(a.Label, b.Label)
}

// Edges returns every edge of the trie, parents before children, siblings
// in canonical order (kind, then label). Restore(cfg, t.Edges()) rebuilds
// the trie.
func (t *Trie) Edges() []Edge {
	out := make([]Edge, 0, len(t.byID)-2)
	t.walkCanonical(func(c *state) bool {
		out = append(out, c.edge())
		return true
	}, nil)
	return out
}

// walkCanonical visits every non-root state depth-first, parents first,
// siblings in canonical order. If keep is not nil, only subtrees whose root
// keep accepts are visited.
func (t *Trie) walkCanonical(visit func(*state) bool, keep func(*state) bool) {
	var rec func(s *state)
	rec = func(s *state) {
		kids := make([]*state, 0, len(s.concrete)+2)
		kids = append(kids, s.concrete...)
		slices.SortFunc(kids, func(a, b *state) int { return cmp.Compare(a.label, b.label) })
		if s.plus != nil {
			kids = append(kids, s.plus)
		}
		if s.end != nil {
			kids = append(kids, s.end)
		}
		for _, c := range kids {
			if keep != nil && !keep(c) {
				continue
			}
			if visit(c) {
				rec(c)
			}
		}
	}
	rec(t.roots[0])
	rec(t.roots[1])
}

// CopyWildcards returns a new trie for cfg (a new generation) holding only
// the learned wildcard paths of t: every state whose path from the root
// contains a '+' edge, and the states leading to them. Concrete topics that
// never met a '+' are left behind, so the new generation starts with what
// was learned about varying levels but not with the pile of concrete
// topics. It also returns the new trie's edges, to persist with the new
// generation. Ids are derived afresh in the new trie; with the same
// TopicIndexBytes they equal the old ones unless an old id needed a rehash.
func (t *Trie) CopyWildcards(cfg Config) (*Trie, []Edge, error) {
	nt, err := NewTrie(cfg)
	if err != nil {
		return nil, nil, err
	}
	// keep[s]: s is on or above a path containing '+'.
	keep := make(map[*state]bool)
	var mark func(s *state, viaPlus bool) bool
	mark = func(s *state, viaPlus bool) bool {
		viaPlus = viaPlus || s.kind == KindPlus
		k := viaPlus
		for _, c := range s.concrete {
			k = mark(c, viaPlus) || k
		}
		if s.plus != nil {
			k = mark(s.plus, viaPlus) || k
		}
		if s.end != nil {
			k = mark(s.end, viaPlus) || k
		}
		keep[s] = k
		return k
	}
	mark(t.roots[0], false)
	mark(t.roots[1], false)
	// Map old states to new ones as the canonical walk copies them.
	moved := map[*state]*state{t.roots[0]: nt.roots[0], t.roots[1]: nt.roots[1]}
	var edges []Edge
	var copyErr error
	t.walkCanonical(func(c *state) bool {
		if copyErr != nil {
			return false
		}
		nc, err := nt.addChild(moved[c.parent], c.kind, c.label)
		if err != nil {
			copyErr = err
			return false
		}
		moved[c] = nc
		edges = append(edges, nc.edge())
		return true
	}, func(c *state) bool { return keep[c] })
	if copyErr != nil {
		return nil, nil, copyErr
	}
	return nt, edges, nil
}

// Structure returns the learned structure of a stream: its topic levels
// from the root, with "+" at varying positions (for example
// ["sensor", "+", "temp"]). It fails with ErrUnknownStatic if static is not
// an end state of the trie.
func (t *Trie) Structure(static StateID) ([]string, error) {
	s := t.byID[static]
	if s == nil || s.kind != KindEnd {
		return nil, fmt.Errorf("%w: %08x", ErrUnknownStatic, uint64(static))
	}
	out := make([]string, s.depth)
	for p := s.parent; p.parent != nil; p = p.parent {
		if p.kind == KindPlus {
			out[p.depth-1] = "+"
		} else {
			out[p.depth-1] = p.label
		}
	}
	return out, nil
}

// NumVarying returns the number of varying levels of a stream, which fixes
// the length of its keys (Layout.KeyLen).
func (t *Trie) NumVarying(static StateID) (int, error) {
	s := t.byID[static]
	if s == nil || s.kind != KindEnd {
		return 0, fmt.Errorf("%w: %08x", ErrUnknownStatic, uint64(static))
	}
	n := 0
	for p := s.parent; p.parent != nil; p = p.parent {
		if p.kind == KindPlus {
			n++
		}
	}
	return n, nil
}

// Statics returns every static index of the trie, sorted.
func (t *Trie) Statics() []StateID {
	out := make([]StateID, 0, t.streams)
	for id, s := range t.byID {
		if s.kind == KindEnd {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
