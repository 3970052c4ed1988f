package storage

import (
	"sync"
	"sync/atomic"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// The tail cache keeps the most recently written messages of every
// wildcard_optimized_v2 stream in memory, so that a reader at the live end
// of a stream (a subscriber that keeps up, thirty-two subscribers of one
// topic, a fleet's wildcard subscription) is served without opening a
// Pebble iterator, and each message is decoded once for all of them.
//
// Invariant (completeness): a stream's tail holds every message of the
// stream with a timestamp above its since mark. It is filled by the shard
// writer from what apply decided, in command order, before the commit: so
// it may hold messages that are not yet committed, and a read takes only
// timestamps up to the readable clock, exactly like a Pebble read. A stream
// first written after Open starts with since just below that first message.
// Evicting a stream's oldest message raises its since mark to that
// message's timestamp; a reader positioned below since reads Pebble.
//
// The budget is global: the oldest messages of all streams go first (a
// FIFO in write order), so the cache holds the last TailCacheBytes of
// traffic, whichever streams it went to.

// tailStreamKey names a stream of a v2 generation.
type tailStreamKey struct {
	shard  int
	gen    uint64
	static lts.StateID
}

// tailWrite is a message apply wrote to a v2 stream: key is its layout key
// (static | ts), val its stored value.
type tailWrite struct {
	gen    uint64
	static lts.StateID
	ts     int64
	key    []byte
	val    []byte
}

// tailEntry is one cached message. msg is decoded by the first reader that
// needs it and then shared: readers treat it as read-only.
type tailEntry struct {
	ts  int64
	key []byte
	val []byte
	msg atomic.Pointer[storagev1.Message]
}

// tailStream is one stream's cached tail: entries[head:] in timestamp
// order, every message above since.
type tailStream struct {
	since   int64
	entries []*tailEntry
	head    int
}

// tailCache is the DB's tail cache. A nil *tailCache is off.
type tailCache struct {
	budget int
	mu     sync.RWMutex
	// size is the bytes held (keys + values + entry overhead).
	size    int
	streams map[tailStreamKey]*tailStream
	// fifo holds the streams of the cached messages in write order: the
	// oldest message of fifo[fifoHead]'s stream is the oldest cached.
	fifo     []tailStreamKey
	fifoHead int

	hits, misses, evicted atomic.Int64
}

// tailEntryOverhead approximates the memory of an entry beyond its bytes.
const tailEntryOverhead = 96

func newTailCache(budget int) *tailCache {
	if budget <= 0 {
		return nil
	}
	return &tailCache{budget: budget, streams: make(map[tailStreamKey]*tailStream)}
}

// applied takes what apply decided for one command of shard: the messages
// it wrote to v2 streams, or the generation it dropped.
func (c *tailCache) applied(shard int, res *applyResult) {
	if res.err != nil {
		return
	}
	c.add(shard, res.tail)
	if res.droppedGen != 0 {
		c.dropGeneration(shard, res.droppedGen)
	}
}

// add caches what one applied command wrote to v2 streams of shard, then
// evicts down to the budget.
func (c *tailCache) add(shard int, ws []tailWrite) {
	if c == nil || len(ws) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range ws {
		k := tailStreamKey{shard: shard, gen: w.gen, static: w.static}
		ts := c.streams[k]
		if ts == nil {
			ts = &tailStream{since: w.ts - 1}
			c.streams[k] = ts
		}
		ts.entries = append(ts.entries, &tailEntry{ts: w.ts, key: w.key, val: w.val})
		c.fifo = append(c.fifo, k)
		c.size += len(w.key) + len(w.val) + tailEntryOverhead
	}
	for c.size > c.budget && c.fifoHead < len(c.fifo) {
		c.evictOldest()
	}
	if c.fifoHead > 1024 && c.fifoHead*2 > len(c.fifo) {
		c.fifo = append(c.fifo[:0], c.fifo[c.fifoHead:]...)
		c.fifoHead = 0
	}
}

// evictOldest drops the oldest cached message. Caller holds mu.
func (c *tailCache) evictOldest() {
	k := c.fifo[c.fifoHead]
	c.fifoHead++
	ts := c.streams[k]
	if ts == nil || ts.head >= len(ts.entries) {
		return // the stream was dropped with its generation
	}
	e := ts.entries[ts.head]
	ts.entries[ts.head] = nil
	ts.head++
	ts.since = e.ts
	c.size -= len(e.key) + len(e.val) + tailEntryOverhead
	c.evicted.Add(1)
	if ts.head == len(ts.entries) {
		ts.entries, ts.head = ts.entries[:0], 0
	} else if ts.head > 64 && ts.head*2 > len(ts.entries) {
		n := copy(ts.entries, ts.entries[ts.head:])
		clear(ts.entries[n:])
		ts.entries, ts.head = ts.entries[:n], 0
	}
}

// dropGeneration forgets the streams of a dropped generation.
func (c *tailCache) dropGeneration(shard int, gen uint64) {
	c.drop(func(k tailStreamKey) bool { return k.shard == shard && k.gen == gen })
}

// dropShard forgets every stream of shard (its state was replaced by a
// snapshot's).
func (c *tailCache) dropShard(shard int) {
	c.drop(func(k tailStreamKey) bool { return k.shard == shard })
}

// drop forgets the streams whose key matches.
func (c *tailCache) drop(match func(tailStreamKey) bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, ts := range c.streams {
		if match(k) {
			for _, e := range ts.entries[ts.head:] {
				c.size -= len(e.key) + len(e.val) + tailEntryOverhead
			}
			delete(c.streams, k)
		}
	}
}

// tailRead is one Next served from the cache.
type tailRead struct {
	// after: messages with a timestamp above it; to: below it (exclusive,
	// the readable limit); endTs, when >= 0: up to and including it.
	after, to, endTs int64
	filter           string
	// unconstrained: no varying level of the filter is a constant, so a
	// scan of any length finds matches (a narrow filter reads the index
	// instead, past maxTailScan).
	unconstrained bool
	max, maxBytes int
	// stored: out holds stored values (Limit.StoredValues); a message
	// is then not decoded, only its topic read.
	stored bool
	out    []Entry
	last   []byte
}

// maxTailScan bounds how many cached messages a read with a narrow filter
// may look at before the index read of Pebble is the cheaper way.
const maxTailScan = 4096

// read serves r from stream k if the cache covers r's position; ok false
// means it does not (or a narrow filter would scan too much), and the caller
// reads Pebble.
func (c *tailCache) read(k tailStreamKey, r *tailRead) (ok bool, err error) {
	if c == nil {
		return false, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	ts := c.streams[k]
	if ts == nil || r.after < ts.since {
		c.misses.Add(1)
		return false, nil
	}
	es := ts.entries[ts.head:]
	// The first entry above after: entries are in timestamp order.
	lo, hi := 0, len(es)
	for lo < hi {
		mid := (lo + hi) / 2
		if es[mid].ts <= r.after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	es = es[lo:]
	if !r.unconstrained && len(es) > maxTailScan {
		c.misses.Add(1)
		return false, nil
	}
	bytesOut := 0
	for _, e := range es {
		if e.ts >= r.to || r.endTs >= 0 && e.ts > r.endTs || len(r.out) >= r.max {
			break
		}
		if r.maxBytes > 0 && len(r.out) > 0 && bytesOut+len(e.key)+len(e.val) > r.maxBytes {
			break
		}
		m := e.msg.Load()
		if r.stored {
			// The cached value is never written: it is shared as it is.
			var match bool
			if m != nil {
				match = lts.MatchTopic(r.filter, m.Topic)
			} else {
				topic, err := storedTopic(e.key, e.val)
				if err != nil {
					return false, err
				}
				match = matchStoredTopic(r.filter, topic)
			}
			r.last = e.key
			if match {
				r.out = append(r.out, Entry{Key: e.key, Value: e.val[1:]})
				bytesOut += len(e.key) + len(e.val)
			}
			continue
		}
		if m == nil {
			m = &storagev1.Message{}
			if err := decodeValue(e.key, e.val, m); err != nil {
				return false, err
			}
			e.msg.Store(m)
		}
		r.last = e.key
		if !lts.MatchTopic(r.filter, m.Topic) {
			continue
		}
		r.out = append(r.out, Entry{Key: e.key, Message: m})
		bytesOut += len(e.key) + len(e.val)
	}
	c.hits.Add(1)
	return true, nil
}

// tailStats are the cache's counters.
type tailStats struct {
	Bytes                 int
	Hits, Misses, Evicted int64
}

func (c *tailCache) stats() tailStats {
	if c == nil {
		return tailStats{}
	}
	c.mu.RLock()
	size := c.size
	c.mu.RUnlock()
	return tailStats{Bytes: size, Hits: c.hits.Load(), Misses: c.misses.Load(), Evicted: c.evicted.Load()}
}

// unconstrained reports whether cs leaves every varying level open.
func unconstrained(cs []lts.Constraint) bool {
	for _, c := range cs {
		if !c.Any {
			return false
		}
	}
	return true
}

// TailCacheStats are the tail cache's counters: bytes held, reads served
// (hits) and sent to Pebble (misses), messages evicted.
type TailCacheStats = tailStats

// TailCacheStats returns the tail cache's counters (zero when it is off).
func (db *DB) TailCacheStats() TailCacheStats { return db.tail.stats() }
