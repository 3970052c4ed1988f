package storage

import "sync/atomic"

// Stats are the counters of one shard since Open. The lead exports them as
// Prometheus metrics.
type Stats struct {
	// Seeks, Nexts and Collisions count the read path of both layouts:
	// Pebble seeks, Pebble nexts (v2: over data and index keys), and
	// messages whose real topic did not match the filter (varying-level
	// hash collisions).
	Seeks, Nexts, Collisions int64
	// Batches, Messages and Bytes count committed write batches, the
	// messages they stored and the bytes of the stored values.
	Batches, Messages, Bytes int64
	// FailedBatches counts batches whose commit failed.
	FailedBatches int64
	// FlushTimeUs is the total time from apply to fsync of the committed
	// batches, in µs (divide by Batches for the mean); FlushTime is its
	// distribution.
	FlushTimeUs int64
	FlushTime   Histogram
	// Duplicates and Refused count Stores answered duplicate, and Stores
	// refused by the producer check.
	Duplicates, Refused int64
	// Ticks counts committed idle ticks.
	Ticks int64
	// ReadableClockUs and AssignedClockUs are R and the last assigned
	// timestamp.
	ReadableClockUs, AssignedClockUs int64
	// Generations is the number of live generations; TrieStates and Streams
	// describe the current generation's trie.
	Generations, TrieStates, Streams int
	// TrieAtCapacity is true when the current trie reached MaxTrieStates.
	TrieAtCapacity bool
}

type shardStats struct {
	seeks, nexts, collisions   atomic.Int64
	batches, messages, bytes   atomic.Int64
	failedBatches, flushTimeUs atomic.Int64
	flushTime                  latencyHistogram
	duplicates, refused, ticks atomic.Int64
}

// Stats returns the counters of a shard (the zero Stats for a shard that
// does not exist).
func (db *DB) Stats(shard int) Stats {
	if shard < 0 || shard >= len(db.shards) {
		return Stats{}
	}
	s := db.shards[shard]
	st := Stats{
		Seeks:           s.stats.seeks.Load(),
		Nexts:           s.stats.nexts.Load(),
		Collisions:      s.stats.collisions.Load(),
		Batches:         s.stats.batches.Load(),
		Messages:        s.stats.messages.Load(),
		Bytes:           s.stats.bytes.Load(),
		FailedBatches:   s.stats.failedBatches.Load(),
		FlushTimeUs:     s.stats.flushTimeUs.Load(),
		FlushTime:       s.stats.flushTime.snapshot(),
		Duplicates:      s.stats.duplicates.Load(),
		Refused:         s.stats.refused.Load(),
		Ticks:           s.stats.ticks.Load(),
		ReadableClockUs: s.readable.Load(),
		AssignedClockUs: s.assigned.Load(),
	}
	s.mu.RLock()
	st.Generations = len(s.mu.st.gens)
	ts := s.mu.st.current().layout.trie.Stats()
	s.mu.RUnlock()
	st.TrieStates, st.Streams, st.TrieAtCapacity = ts.States, ts.Streams, ts.AtCapacity
	return st
}
