package server

import (
	"cmp"
	"slices"
)

// entryMap maps the machine's entry ids to the router's, sorted by the
// machine's. A connection has few entries (a Watch per subscription, a Read
// per stream), and an idle session keeps its map for its life: a slice of
// pairs costs 16 bytes an entry where a map costs about 200 bytes for the
// first. The machine's ids only grow, so an add appends.
type entryMap []entryPair

type entryPair struct{ entry, id uint64 }

func (m entryMap) search(entry uint64) (int, bool) {
	return slices.BinarySearchFunc(m, entry, func(p entryPair, e uint64) int { return cmp.Compare(p.entry, e) })
}

// get returns the router's id of entry.
func (m entryMap) get(entry uint64) (uint64, bool) {
	if i, ok := m.search(entry); ok {
		return m[i].id, true
	}
	return 0, false
}

// set records that entry is the router's id.
func (m *entryMap) set(entry, id uint64) {
	i, ok := m.search(entry)
	if ok {
		(*m)[i].id = id
		return
	}
	*m = slices.Insert(*m, i, entryPair{entry, id})
}

// remove forgets entry and returns its router id.
func (m *entryMap) remove(entry uint64) (uint64, bool) {
	i, ok := m.search(entry)
	if !ok {
		return 0, false
	}
	id := (*m)[i].id
	*m = slices.Delete(*m, i, i+1)
	if len(*m) == 0 {
		*m = nil
	}
	return id, true
}
