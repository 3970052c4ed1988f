package storage

import (
	"context"
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stratamq/strata/lts"
)

// leapfrog reads one wildcard_optimized_v2 stream: the messages with
// timestamps in [from, to) whose varying levels satisfy cs and whose topic
// matches filter, in timestamp order, after last.
//
// It is a merge-join on timestamp of time-sorted lists: the index list
// (S|10|gen|05|static|n|hash) of every varying level that cs constrains to
// a value, then the stream's data keys (S|10|gen|03|static). A candidate ts
// is a hit when every list holds it; a list whose next key is later moves
// the candidate there, and the lists that had agreed must catch up. So a
// narrow filter on a wide stream costs about one seek per list per gap
// between matches, not a visit of every message. Levels that cs leaves
// open ("+") are not read. A hit is checked against the real topic, since
// stored hashes (BitsPerTopicLevel bits) can collide.
type leapfrog struct {
	db     *DB
	stats  *shardStats
	keys   *lts.TimeLayout
	shard  int
	gen    uint64
	static lts.StateID
	// staticBytes is static as stored (TopicIndexBytes bytes).
	staticBytes []byte
	cs          []lts.Constraint
	filter      string
	// from, to bound the timestamps, to exclusive.
	from, to uint64
	// last is the data key (without the S|10|gen|03 prefix) of the last
	// visited message, nil at the start; endKey, when set, is the last
	// data key to visit (Limit.End).
	last, endKey []byte
	max          int
	// maxBytes bounds the bytes of out (Limit.MaxBytes); bytes is the sum.
	maxBytes, bytes int
	out             []Entry
	// stored: out holds stored values, not messages (Limit.StoredValues).
	stored bool
}

// tsList is one time-sorted list of the join: a Pebble iterator bounded to
// one key prefix, whose keys end with the timestamp.
type tsList struct {
	iter    *pebble.Iterator
	prefix  []byte
	buf     []byte
	valid   bool // positioned on a key
	started bool
	// seekOnly: the list is visited at scattered times (the data list of a
	// join with index lists), so a Next before a seek is wasted.
	seekOnly bool
}

// ts is the timestamp of the key the list is positioned on.
func (l *tsList) ts() uint64 { return lts.KeyTS(l.iter.Key()) }

// advance positions the list on its first key with timestamp >= t, and
// reports whether there is one. A list one step behind takes a Next (the
// common case while reading consecutive matches); otherwise it seeks.
func (l *tsList) advance(t uint64, st *shardStats) bool {
	if l.started && l.valid {
		cur := l.ts()
		if cur >= t {
			return true
		}
		if !l.seekOnly {
			st.nexts.Add(1)
			if l.valid = l.iter.Next(); !l.valid || l.ts() >= t {
				return l.valid
			}
		}
	}
	st.seeks.Add(1)
	l.started = true
	l.buf = binary.BigEndian.AppendUint64(append(l.buf[:0], l.prefix...), t)
	l.valid = l.iter.SeekGE(l.buf)
	return l.valid
}

// run fills out; exhausted reports that no matching message is left below
// to.
func (lf *leapfrog) run(ctx context.Context) (exhausted bool, err error) {
	if lf.from >= lf.to {
		return true, nil
	}
	var lists []*tsList
	defer func() {
		for _, l := range lists {
			if cerr := l.iter.Close(); cerr != nil && err == nil {
				err = wrapPebble("next", cerr)
			}
		}
	}()
	open := func(prefix []byte) (*tsList, error) {
		iter, err := lf.db.pdb.NewIter(&pebble.IterOptions{
			LowerBound: binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), lf.from),
			UpperBound: binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), lf.to),
		})
		if err != nil {
			return nil, wrapPebble("next", err)
		}
		l := &tsList{iter: iter, prefix: prefix}
		lists = append(lists, l)
		return l, nil
	}
	for i, c := range lf.cs {
		if c.Any {
			continue
		}
		p := lf.keys.AppendIndexPrefix(genSubPrefix(lf.shard, lf.gen, subIndex), lf.static, i+1, lf.keys.LevelHash(c.Value))
		if _, err := open(p); err != nil {
			return false, err
		}
	}
	dataPrefix := genSubPrefix(lf.shard, lf.gen, subData)
	data, err := open(append(append([]byte(nil), dataPrefix...), lf.staticBytes...))
	if err != nil {
		return false, err
	}
	data.seekOnly = len(lists) > 1

	t := lf.from
	if len(lf.last) > 0 {
		t = max(t, lts.KeyTS(lf.last)+1)
	}
	var endTs uint64
	if lf.endKey != nil {
		endTs = lts.KeyTS(lf.endKey)
	}
	steps := 0
	for {
		if t >= lf.to {
			return true, nil
		}
		if lf.endKey != nil && t > endTs {
			return false, nil
		}
		if steps++; steps%256 == 0 && ctx.Err() != nil {
			return false, ctx.Err()
		}
		// Zig-zag: go round the lists until all of them agree on t.
		agreed := 0
		for i := 0; agreed < len(lists); i = (i + 1) % len(lists) {
			l := lists[i]
			if !l.advance(t, lf.stats) {
				return true, wrapPebble("next", l.iter.Error())
			}
			if got := l.ts(); got > t {
				t, agreed = got, 1
				if lf.endKey != nil && t > endTs {
					return false, nil
				}
				continue
			}
			agreed++
		}
		// Every list holds t; the data list is positioned on its message.
		key := data.iter.Key()[len(dataPrefix):]
		v, err := data.iter.ValueAndErr()
		if err != nil {
			return false, wrapPebble("next", err)
		}
		if lf.maxBytes > 0 && len(lf.out) > 0 && lf.bytes+len(key)+len(v) > lf.maxBytes {
			// Full by bytes; last does not move, so the next call starts
			// at this message.
			return false, nil
		}
		e, topic, err := readValue(data.iter.Key(), v, lf.stored)
		if err != nil {
			return false, err
		}
		lf.last = append(lf.last[:0:0], key...)
		t++
		if !lts.MatchTopic(lf.filter, topic) {
			lf.stats.collisions.Add(1)
			continue
		}
		e.Key = lf.last
		lf.out = append(lf.out, e)
		lf.bytes += len(key) + len(v)
		if len(lf.out) >= lf.max {
			return t >= lf.to, nil
		}
	}
}
