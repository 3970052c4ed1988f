package storage

import (
	"bytes"
	"fmt"

	"github.com/stratamq/strata/lts"
)

// layoutWildcardOptimized is the only layout type: LTS static index, epoch,
// varying-level hashes, time offset (see lts.Layout).
const layoutWildcardOptimized = "wildcard_optimized"

// edgeRecord is one persisted trie edge: the key suffix (after S|10|gen|01)
// and the value, both as lts writes them.
type edgeRecord struct{ key, value []byte }

// wildcardLayout is a generation's trie plus its frozen key layout. The trie
// is mutated only by the shard writer under shard.mu; everything else is
// immutable.
type wildcardLayout struct {
	cfg  lts.Config
	trie *lts.Trie
	keys *lts.Layout
}

func newWildcardLayout(cfg lts.Config, trie *lts.Trie) (*wildcardLayout, error) {
	keys, err := lts.NewLayout(cfg)
	if err != nil {
		return nil, err
	}
	return &wildcardLayout{cfg: cfg.Clone(), trie: trie, keys: keys}, nil
}

// restoreLayout rebuilds a generation's layout from its edge records.
func restoreLayout(cfg lts.Config, recs []edgeRecord) (*wildcardLayout, error) {
	edges := make([]lts.Edge, len(recs))
	for i, r := range recs {
		e, err := lts.DecodeEdgeRecord(r.value, cfg.TopicIndexBytes)
		if err != nil {
			return nil, err
		}
		if want := lts.EdgeRecordKey(nil, e, cfg.TopicIndexBytes); !bytes.Equal(want, r.key) {
			return nil, fmt.Errorf("edge %v stored under key %x, expected %x", e, r.key, want)
		}
		edges[i] = e
	}
	trie, err := lts.Restore(cfg, edges)
	if err != nil {
		return nil, err
	}
	return newWildcardLayout(cfg, trie)
}

// successor returns the layout of the next generation (with cfg), holding
// the wildcard paths of this one, and the edges to persist for it.
func (l *wildcardLayout) successor(cfg lts.Config) (*wildcardLayout, []lts.Edge, error) {
	trie, edges, err := l.trie.CopyWildcards(cfg)
	if err != nil {
		return nil, nil, err
	}
	nl, err := newWildcardLayout(cfg, trie)
	return nl, edges, err
}

// learn maps a topic name to its stream, learning what it needs. Writer
// only, under shard.mu.
func (l *wildcardLayout) learn(topic string) (lts.Learned, error) {
	return l.trie.Learn(lts.SplitTopic(topic))
}

func (l *wildcardLayout) edgeRecord(e lts.Edge) (key, value []byte) {
	return lts.EdgeRecordKey(nil, e, l.cfg.TopicIndexBytes), lts.AppendEdgeRecord(nil, e, l.cfg.TopicIndexBytes)
}

// dataKey is the layout key of a message (without the storage prefix).
func (l *wildcardLayout) dataKey(learned lts.Learned, ts int64) []byte {
	return l.keys.AppendKey(nil, learned.Static, learned.Varying, uint64(ts))
}

// staticBytes encodes a static index as TopicIndexBytes big-endian bytes.
func (l *wildcardLayout) staticBytes(static lts.StateID) []byte {
	w := l.cfg.TopicIndexBytes
	b := make([]byte, w)
	for i := 0; i < w; i++ {
		b[i] = byte(uint64(static) >> (8 * uint(w-1-i)))
	}
	return b
}

func (l *wildcardLayout) parseStatic(b []byte) (lts.StateID, error) {
	if len(b) != l.cfg.TopicIndexBytes {
		return 0, fmt.Errorf("static index of %d bytes, expected %d", len(b), l.cfg.TopicIndexBytes)
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return lts.StateID(v), nil
}

func (l *wildcardLayout) epochBits() int { return l.cfg.EpochBits }

// constraintsFor derives the varying-level constraints of a stream (its
// learned structure, "+" at varying levels) from a topic filter, both split
// into levels. ok is false when no topic of the stream can match the
// filter.
func constraintsFor(structure, filter []string) (cs []lts.Constraint, ok bool) {
	if len(structure) > 0 && len(filter) > 0 && len(structure[0]) > 0 && structure[0][0] == '$' &&
		(filter[0] == "+" || filter[0] == "#") {
		return nil, false // [MQTT-4.7.2-1]
	}
	for i, s := range structure {
		if i >= len(filter) {
			return nil, false
		}
		f := filter[i]
		if f == "#" {
			for _, s := range structure[i:] {
				if s == "+" {
					cs = append(cs, lts.Any())
				}
			}
			return cs, true
		}
		if s == "+" {
			if f == "+" {
				cs = append(cs, lts.Any())
			} else {
				cs = append(cs, lts.Equal(f))
			}
			continue
		}
		if f != "+" && f != s {
			return nil, false
		}
	}
	switch {
	case len(filter) == len(structure):
		return cs, true
	case len(filter) == len(structure)+1 && filter[len(structure)] == "#":
		return cs, true // "a/#" matches "a"
	}
	return nil, false
}
