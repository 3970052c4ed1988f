package storage

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// Stream is one (shard, generation, static index): the unit of ordering
// and replay. Messages of one topic are in timestamp order inside a stream.
type Stream struct {
	Shard      int
	Generation uint64
	// StaticIndex is the stream's LTS static index (TopicIndexBytes bytes).
	StaticIndex []byte
	// Structure is the learned topic structure, "+" at varying levels (for
	// example "sensor/+/temp"), for operators.
	Structure string
}

// GetStreams returns the streams that may hold messages matching the topic
// filter with a timestamp >= startUs, in one shard or (shard = -1) all,
// ordered by shard, generation, static index. Generations that ended at or
// before startUs are skipped.
func (db *DB) GetStreams(filter string, startUs int64, shard int) ([]Stream, error) {
	levels, err := validateFilter(filter)
	if err != nil {
		return nil, err
	}
	first, last := 0, len(db.shards)-1
	if shard != -1 {
		if _, err := db.shard(shard); err != nil {
			return nil, err
		}
		first, last = shard, shard
	}
	for i := first; i <= last; i++ {
		if err := db.shards[i].readRefusal(); err != nil {
			return nil, err
		}
	}
	var out []Stream
	for i := first; i <= last; i++ {
		s := db.shards[i]
		s.mu.RLock()
		for _, g := range s.mu.st.gens {
			if g.meta.UntilUs != 0 && g.meta.UntilUs <= startUs {
				continue
			}
			for _, m := range g.layout.trie.Match(levels) {
				st, err := g.layout.trie.Structure(m.Static)
				if err != nil {
					s.mu.RUnlock()
					return nil, fmt.Errorf("storage: shard %d generation %d: %w", i, g.meta.Id, err)
				}
				out = append(out, Stream{Shard: i, Generation: g.meta.Id, StaticIndex: g.layout.staticBytes(m.Static), Structure: strings.Join(st, "/")})
			}
		}
		s.mu.RUnlock()
	}
	return out, nil
}

// MakeIterator returns an iterator over the messages of stream s that match
// the topic filter and have a timestamp >= startUs. The iterator is opaque
// bytes: a version byte, then a storagev1.Iterator.
func (db *DB) MakeIterator(s Stream, filter string, startUs int64) ([]byte, error) {
	if _, err := validateFilter(filter); err != nil {
		return nil, err
	}
	it := &storagev1.Iterator{
		Shard:       uint32(s.Shard),
		Generation:  s.Generation,
		StaticIndex: s.StaticIndex,
		TopicFilter: filter,
		StartTimeUs: startUs,
		LastSeenKey: nil,
	}
	if s.Shard < 0 || s.Shard >= len(db.shards) {
		return nil, fmt.Errorf("%w: shard %d does not exist", ErrInvalidIterator, s.Shard)
	}
	if _, err := db.resolve(it); err != nil {
		return nil, err
	}
	return encodeIterator(it), nil
}

func validateFilter(filter string) ([]string, error) {
	if err := lts.ValidateTopicFilter(filter, lts.DefaultMaxTopicLevels); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidFilter, truncate(filter), err)
	}
	return lts.SplitTopic(filter), nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// encodeIterator frames an iterator: the version byte, then its protobuf.
func encodeIterator(it *storagev1.Iterator) []byte {
	return encodeValue(it)
}

// decodeIterator parses iterator bytes; every failure wraps
// ErrInvalidIterator. It never panics.
func decodeIterator(b []byte) (*storagev1.Iterator, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidIterator)
	}
	if b[0] != valueVersion1 {
		return nil, fmt.Errorf("%w: unknown version %d", ErrInvalidIterator, b[0])
	}
	it := &storagev1.Iterator{}
	if err := proto.Unmarshal(b[1:], it); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidIterator, err)
	}
	return it, nil
}
