package storage

import (
	"bytes"
	"fmt"

	"github.com/stratamq/strata/lts"
)

// Layout types, as recorded in a generation's Layout.Type.
const (
	// layoutWildcardOptimized (v1) keys a message by LTS static index,
	// epoch, varying-level hashes, time offset (lts.Layout): a wildcard
	// stream in the current generation is readable only by whole epochs.
	layoutWildcardOptimized = "wildcard_optimized"
	// layoutWildcardOptimizedV2 keys a message by static index and time,
	// plus one index key per varying level (lts.TimeLayout): everything up
	// to the readable clock is readable. The default for new generations.
	layoutWildcardOptimizedV2 = "wildcard_optimized_v2"
)

// emptyValue is the value of index keys (a nil value would be a delete).
var emptyValue = []byte{}

// edgeRecord is one persisted trie edge: the key suffix (after S|10|gen|01)
// and the value, both as lts writes them.
type edgeRecord struct{ key, value []byte }

// wildcardLayout is a generation's trie plus its frozen key layout, of
// either type: keys is set for wildcard_optimized, tkeys for
// wildcard_optimized_v2. The trie is mutated only by the shard writer under
// shard.mu; everything else is immutable.
type wildcardLayout struct {
	typ   string
	cfg   lts.Config
	trie  *lts.Trie
	keys  *lts.Layout     // v1 only
	tkeys *lts.TimeLayout // v2 only
}

func newWildcardLayout(typ string, cfg lts.Config, trie *lts.Trie) (*wildcardLayout, error) {
	l := &wildcardLayout{typ: typ, cfg: cfg.Clone(), trie: trie}
	var err error
	switch typ {
	case layoutWildcardOptimized:
		l.keys, err = lts.NewLayout(cfg)
	case layoutWildcardOptimizedV2:
		l.tkeys, err = lts.NewTimeLayout(cfg)
	default:
		err = fmt.Errorf("unknown layout type %q", typ)
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

// timeFirst reports a wildcard_optimized_v2 layout.
func (l *wildcardLayout) timeFirst() bool { return l.tkeys != nil }

// restoreLayout rebuilds a generation's layout from its edge records.
func restoreLayout(typ string, cfg lts.Config, recs []edgeRecord) (*wildcardLayout, error) {
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
	return newWildcardLayout(typ, cfg, trie)
}

// successor returns the layout of the next generation (of type typ, with
// cfg), holding the wildcard paths of this one, and the edges to persist
// for it.
func (l *wildcardLayout) successor(typ string, cfg lts.Config) (*wildcardLayout, []lts.Edge, error) {
	trie, edges, err := l.trie.CopyWildcards(cfg)
	if err != nil {
		return nil, nil, err
	}
	nl, err := newWildcardLayout(typ, cfg, trie)
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

// appendMessage appends the writes that store a message (its stored value
// val) of generation gen: the data key, and for v2 one index key per
// varying level.
func (l *wildcardLayout) appendMessage(ws []write, shard int, gen uint64, learned lts.Learned, ts int64, val []byte) []write {
	if !l.timeFirst() {
		return append(ws, write{key: dataKey(shard, gen, l.keys.AppendKey(nil, learned.Static, learned.Varying, uint64(ts))), value: val})
	}
	dk := appendGenSubPrefix(make([]byte, 0, dataKeyPrefixLen+l.tkeys.DataKeyLen()), shard, gen, subData)
	ws = append(ws, write{key: l.tkeys.AppendDataKey(dk, learned.Static, uint64(ts)), value: val})
	for i, v := range learned.Varying {
		ik := appendGenSubPrefix(make([]byte, 0, dataKeyPrefixLen+l.tkeys.IndexKeyLen()), shard, gen, subIndex)
		ws = append(ws, write{key: l.tkeys.AppendIndexKey(ik, learned.Static, i+1, l.tkeys.LevelHash(v), uint64(ts)), value: emptyValue})
	}
	return ws
}

// keyLen is the length of the data (layout) keys of a stream with nVarying
// varying levels.
func (l *wildcardLayout) keyLen(nVarying int) int {
	if l.timeFirst() {
		return l.tkeys.DataKeyLen()
	}
	return l.keys.KeyLen(nVarying)
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

// needsTicks reports whether the layout needs idle ticks to make its last
// data readable: only a v1 layout with real epochs, where a wildcard
// stream's current epoch is held back until the clock leaves it.
func (l *wildcardLayout) needsTicks() bool {
	return !l.timeFirst() && l.cfg.EpochBits < 64
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
