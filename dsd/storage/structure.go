package storage

import (
	"fmt"
	"sort"
	"strings"
)

// LearnedStream is one stream of a generation's learned topic structure.
type LearnedStream struct {
	StaticIndex []byte
	// Structure is the topic shape with "+" at varying levels.
	Structure string
	// Count is the number of messages stored in the stream.
	Count uint64
}

// LearnedStructure describes the learned topic trie of one generation.
type LearnedStructure struct {
	Generation uint64
	Streams    []LearnedStream
	TrieStates int
	AtCapacity bool
}

// LearnedStructure returns the streams of a live generation of a shard (gen
// 0 means the current one), sorted by structure. It backs `dstool lts`.
func (db *DB) LearnedStructure(shard int, gen uint64) (LearnedStructure, error) {
	s, err := db.shard(shard)
	if err != nil {
		return LearnedStructure{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.mu.st.current()
	if gen != 0 {
		if g = s.mu.st.gen(gen); g == nil {
			return LearnedStructure{}, fmt.Errorf("%w: shard %d has no live generation %d", ErrUnknownGeneration, shard, gen)
		}
	}
	trie := g.layout.trie
	stats := trie.Stats()
	out := LearnedStructure{Generation: g.meta.Id, TrieStates: stats.States, AtCapacity: stats.AtCapacity}
	for _, static := range trie.Statics() {
		levels, err := trie.Structure(static)
		if err != nil {
			return LearnedStructure{}, fmt.Errorf("%w: shard %d generation %d: %w", ErrCorruption, shard, g.meta.Id, err)
		}
		out.Streams = append(out.Streams, LearnedStream{
			StaticIndex: g.layout.staticBytes(static),
			Structure:   strings.Join(levels, "/"),
			Count:       g.counts[static],
		})
	}
	sort.Slice(out.Streams, func(i, j int) bool { return out.Streams[i].Structure < out.Streams[j].Structure })
	return out, nil
}
