package storage

import (
	"bytes"
	"context"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// Limit bounds one Next call. At least one of Max, Count and End is set.
type Limit struct {
	// Max is the largest number of messages to return (0 = unset).
	Max int
	// Count asks for exactly Count messages (0 = unset): replaying a batch
	// that was read before. Fewer are returned only if the stream has fewer
	// readable messages.
	Count int
	// End is an end iterator of the same stream and filter (nil = unset):
	// return the messages up to and including its last seen key.
	End []byte
	// MaxBytes, when > 0, also bounds the result by the bytes of keys plus
	// stored values: a message that would take the total past MaxBytes is
	// left for the next call, unless it is the first (so one message larger
	// than MaxBytes is returned alone). Ignored with Count (replay must
	// return the same messages).
	MaxBytes int
	// StoredValues returns each message as it is stored (Entry.Value)
	// instead of decoded (Entry.Message): for a reader that sends the
	// messages on (the gateway link), so that dsd neither decodes nor
	// encodes them again. Only the topic is read, for the filter.
	StoredValues bool
}

// Entry is one message returned by Next: Message, or with
// Limit.StoredValues Value.
type Entry struct {
	// Key is the message's layout key: unique within the shard, and in
	// stream order.
	Key     []byte
	Message *storagev1.Message
	// Value is the protobuf encoding of the storagev1.Message as stored
	// (without the value's version byte). It may be shared with the tail
	// cache and other readers: read-only.
	Value []byte
}

// resolved is an iterator checked against the shard state.
type resolved struct {
	s         *shard
	layout    *wildcardLayout
	current   bool
	untilUs   int64
	static    lts.StateID
	nVarying  int
	filter    string
	cs        []lts.Constraint
	matchable bool
}

// resolve checks an iterator against the live generations of its shard.
func (db *DB) resolve(it *storagev1.Iterator) (*resolved, error) {
	if int64(it.Shard) >= int64(len(db.shards)) {
		return nil, fmt.Errorf("%w: shard %d does not exist", ErrInvalidIterator, it.Shard)
	}
	levels, err := validateFilter(it.TopicFilter)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidIterator, err)
	}
	s := db.shards[it.Shard]
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.mu.st
	g := st.gen(it.Generation)
	if g == nil {
		if it.Generation > 0 && it.Generation < st.current().meta.Id {
			return nil, fmt.Errorf("%w: shard %d generation %d", ErrGenerationDropped, it.Shard, it.Generation)
		}
		return nil, fmt.Errorf("%w: shard %d has no generation %d", ErrInvalidIterator, it.Shard, it.Generation)
	}
	static, err := g.layout.parseStatic(it.StaticIndex)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidIterator, err)
	}
	structure, err := g.layout.trie.Structure(static)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidIterator, err)
	}
	r := &resolved{s: s, layout: g.layout, current: g == st.current(), untilUs: g.meta.UntilUs, static: static, filter: it.TopicFilter}
	for _, l := range structure {
		if l == "+" {
			r.nVarying++
		}
	}
	if k := it.LastSeenKey; len(k) > 0 && (len(k) != g.layout.keyLen(r.nVarying) || !bytes.HasPrefix(k, it.StaticIndex)) {
		return nil, fmt.Errorf("%w: last seen key %x does not belong to the stream", ErrInvalidIterator, k)
	}
	r.cs, r.matchable = constraintsFor(structure, levels)
	return r, nil
}

// Next returns the next messages of an iterator's stream that match its
// filter, in stream order, and the iterator to continue from. Only committed
// messages are returned: up to the readable clock R in a
// wildcard_optimized_v2 generation and for a stream without varying levels;
// in a wildcard_optimized (v1) current generation, a stream with varying
// levels is read only up to the start of R's epoch (a later message can
// still land before the cursor inside an incomplete epoch). The iterator
// is read by the layout of its generation's record. An empty result means "no
// data yet". endOfStream is true when the stream of a non-current
// generation is exhausted; a dropped generation fails with
// ErrGenerationDropped.
func (db *DB) Next(ctx context.Context, itBytes []byte, lim Limit) (entries []Entry, next []byte, endOfStream bool, err error) {
	it, err := decodeIterator(itBytes)
	if err != nil {
		return nil, nil, false, err
	}
	if s, err := db.shard(int(it.Shard)); err == nil {
		if err := s.readRefusal(); err != nil {
			return nil, nil, false, err
		}
	}
	max := lim.Max
	if lim.Count > 0 {
		max = lim.Count
	}
	if max < 0 || lim.Count < 0 || (max == 0 && lim.End == nil) {
		return nil, nil, false, fmt.Errorf("%w: next: set Max, Count or End", ErrInvalidArgument)
	}
	if max == 0 {
		max = math.MaxInt
	}
	var endKey []byte
	if lim.End != nil {
		end, err := decodeIterator(lim.End)
		if err != nil {
			return nil, nil, false, fmt.Errorf("end iterator: %w", err)
		}
		if end.Shard != it.Shard || end.Generation != it.Generation || !bytes.Equal(end.StaticIndex, it.StaticIndex) || end.TopicFilter != it.TopicFilter {
			return nil, nil, false, fmt.Errorf("%w: end iterator is of another stream or filter", ErrInvalidIterator)
		}
		if len(end.LastSeenKey) == 0 {
			return nil, itBytes, false, nil
		}
		endKey = end.LastSeenKey
	}
	r, err := db.resolve(it)
	if err != nil {
		return nil, nil, false, err
	}
	if endKey != nil && (len(endKey) != r.layout.keyLen(r.nVarying) || !bytes.HasPrefix(endKey, it.StaticIndex)) {
		// The v2 read takes the end key's last 8 bytes as its time.
		return nil, nil, false, fmt.Errorf("%w: end iterator's last seen key %x does not belong to the stream", ErrInvalidIterator, endKey)
	}
	// R is read before the Pebble iterator opens: everything <= R is
	// committed, hence visible to it.
	R := r.s.readable.Load()
	from := uint64(max64(it.StartTimeUs, 0))
	var to uint64 // exclusive
	committedAll := false
	switch {
	case !r.current:
		// A non-current generation takes no more writes; only what is not
		// yet committed (a batch in flight when it was ended) is held back.
		to = uint64(min(r.untilUs, R+1))
		committedAll = r.untilUs <= R+1
	case r.layout.timeFirst() || r.nVarying == 0 || r.layout.cfg.EpochBits >= 64:
		// Time-first keys (v2), or a v1 stream whose keys only grow: no
		// later write can sort before a message already committed.
		to = uint64(R + 1)
	default:
		to = r.layout.keys.EpochStart(uint64(R))
	}
	if !r.matchable || from >= to {
		return nil, itBytes, committedAll, nil
	}
	maxBytes := lim.MaxBytes
	if lim.Count > 0 {
		maxBytes = 0
	}
	var (
		out       []Entry
		last      []byte
		exhausted bool
	)
	if r.layout.timeFirst() && r.current {
		// The live end of the stream, from the tail cache when it covers
		// the iterator's position.
		tr := tailRead{after: int64(from) - 1, to: int64(to), endTs: -1, filter: r.filter,
			unconstrained: unconstrained(r.cs), max: max, maxBytes: maxBytes, stored: lim.StoredValues}
		if len(it.LastSeenKey) > 0 {
			tr.after = max64(tr.after, int64(lts.KeyTS(it.LastSeenKey)))
		}
		if endKey != nil {
			tr.endTs = int64(lts.KeyTS(endKey))
		}
		k := tailStreamKey{shard: int(it.Shard), gen: it.Generation, static: r.static}
		ok, terr := db.tail.read(k, &tr)
		if terr != nil {
			return nil, nil, false, terr
		}
		if ok {
			if tr.last == nil {
				return tr.out, itBytes, false, nil
			}
			nit := &storagev1.Iterator{
				Shard: it.Shard, Generation: it.Generation, StaticIndex: it.StaticIndex,
				TopicFilter: it.TopicFilter, StartTimeUs: it.StartTimeUs, LastSeenKey: tr.last,
			}
			return tr.out, encodeIterator(nit), false, nil
		}
	}
	if r.layout.timeFirst() {
		lf := leapfrog{
			db: db, stats: &r.s.stats, keys: r.layout.tkeys, shard: int(it.Shard), gen: it.Generation,
			static: r.static, staticBytes: it.StaticIndex, cs: r.cs, filter: r.filter,
			from: from, to: to, last: it.LastSeenKey, endKey: endKey, max: max, maxBytes: maxBytes,
			stored: lim.StoredValues,
		}
		exhausted, err = lf.run(ctx)
		out, last = lf.out, lf.last
	} else {
		f, ferr := r.layout.keys.Filter(r.static, r.cs, from, to)
		if ferr != nil {
			return nil, nil, false, fmt.Errorf("storage: next: %w", ferr)
		}
		sc := scan{db: db, r: r, f: f, prefix: genSubPrefix(int(it.Shard), it.Generation, subData), last: it.LastSeenKey, endKey: endKey, max: max, maxBytes: maxBytes,
			stored: lim.StoredValues}
		exhausted, err = sc.run(ctx)
		out, last = sc.out, sc.last
	}
	if err != nil {
		return nil, nil, false, err
	}
	nit := &storagev1.Iterator{
		Shard: it.Shard, Generation: it.Generation, StaticIndex: it.StaticIndex,
		TopicFilter: it.TopicFilter, StartTimeUs: it.StartTimeUs, LastSeenKey: last,
	}
	return out, encodeIterator(nit), exhausted && committedAll && endKey == nil, nil
}

// scan walks one stream with seeks and nexts.
type scan struct {
	db     *DB
	r      *resolved
	f      *lts.KeyFilter
	prefix []byte
	last   []byte // last visited matching key
	endKey []byte
	max    int
	out    []Entry
	// maxBytes bounds the bytes of out (Limit.MaxBytes); bytes is the sum.
	maxBytes, bytes int
	// stored: out holds stored values, not messages (Limit.StoredValues).
	stored bool
}

// run fills out; exhausted reports that no accepted key is left.
func (sc *scan) run(ctx context.Context) (exhausted bool, err error) {
	lower, upper, ok := sc.f.Bounds()
	if !ok {
		return true, nil
	}
	p := sc.prefix
	iter, err := sc.db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: append(append([]byte(nil), p...), lower...),
		UpperBound: append(append(append([]byte(nil), p...), upper...), 0),
	})
	if err != nil {
		return false, wrapPebble("next", err)
	}
	defer iter.Close()
	stats := &sc.r.s.stats
	var seek []byte
	if len(sc.last) == 0 {
		seek, ok = sc.f.Ratchet(nil, lower)
	} else {
		seek, ok = sc.f.Increment(nil, sc.last)
	}
	steps := 0
	for ok {
		if sc.endKey != nil && bytes.Compare(seek, sc.endKey) > 0 {
			return false, nil
		}
		stats.seeks.Add(1)
		valid := iter.SeekGE(append(append(make([]byte, 0, len(p)+len(seek)), p...), seek...))
		for {
			if !valid {
				return true, wrapPebble("next", iter.Error())
			}
			if steps++; steps%256 == 0 && ctx.Err() != nil {
				return false, ctx.Err()
			}
			key := iter.Key()[len(p):]
			if !sc.f.Matches(key) {
				// Outside the filter (another hash, or outside the time
				// range): jump. last does not move, so a key held back by
				// the time cutoff is read once it becomes readable.
				seek, ok = sc.f.Ratchet(seek[:0], key)
				break
			}
			if sc.endKey != nil && bytes.Compare(key, sc.endKey) > 0 {
				return false, nil
			}
			v, err := iter.ValueAndErr()
			if err != nil {
				return false, wrapPebble("next", err)
			}
			if sc.maxBytes > 0 && len(sc.out) > 0 && sc.bytes+len(key)+len(v) > sc.maxBytes {
				// Full by bytes; last does not move, so the next call
				// starts at this key.
				return false, nil
			}
			e, topic, err := readValue(iter.Key(), v, sc.stored)
			if err != nil {
				return false, err
			}
			sc.last = append(sc.last[:0:0], key...)
			if lts.MatchTopic(sc.r.filter, topic) {
				e.Key = sc.last
				sc.out = append(sc.out, e)
				sc.bytes += len(key) + len(v)
				if len(sc.out) >= sc.max {
					// Exhausted only if nothing accepted follows.
					_, more := sc.f.Increment(nil, sc.last)
					return !more, nil
				}
			} else {
				stats.collisions.Add(1)
			}
			stats.nexts.Add(1)
			valid = iter.Next()
		}
	}
	return true, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
