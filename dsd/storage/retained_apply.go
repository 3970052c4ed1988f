package storage

import (
	"container/heap"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Retained commands of a shard's command sequence (retained.go).
type (
	// cmdRetainedDelete writes an operator's tombstone for topic above
	// aboveUs (DeleteRetainedAbove).
	cmdRetainedDelete struct {
		nowUs   int64
		topic   string
		aboveUs int64
	}
	// cmdRetainedExpire turns the retained messages of the shard that
	// expired by nowUs into tombstones (at most maxRetainedExpiries).
	cmdRetainedExpire struct{ nowUs int64 }
)

func (cmdRetainedDelete) isCommand() {}
func (cmdRetainedExpire) isCommand() {}

// maxRetainedExpiries bounds the records one cmdRetainedExpire rewrites.
const maxRetainedExpiries = 1024

// retainedTimers indexes the shard's retained records that carry an expiry:
// a heap by expiry, and the timestamp of each topic's expiring record, so
// that a heap entry whose record was replaced since is recognised as dead.
type retainedTimers struct {
	h   retainedHeap
	cur map[string]int64 // topic -> timestamp of its expiring record
}

type retainedTimer struct {
	at, ts    int64
	topic     string
	shard     uint32
	publisher string
}

type retainedHeap []retainedTimer

func (h retainedHeap) Len() int { return len(h) }
func (h retainedHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].topic < h[j].topic
}
func (h retainedHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *retainedHeap) Push(x any)   { *h = append(*h, x.(retainedTimer)) }
func (h *retainedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// track notes rec as the shard's current record of topic.
func (x *retainedTimers) track(topic string, rec *storagev1.RetainedRecord) {
	if rec.Message == nil || rec.ExpiresAtUs == 0 {
		delete(x.cur, topic)
		return
	}
	if x.cur == nil {
		x.cur = make(map[string]int64)
	}
	x.cur[topic] = rec.TimestampUs
	heap.Push(&x.h, retainedTimer{at: rec.ExpiresAtUs, ts: rec.TimestampUs, topic: topic, shard: rec.Shard, publisher: rec.PublisherClientId})
}

// next returns the earliest live timer, dropping dead entries on the way.
func (x *retainedTimers) next() (retainedTimer, bool) {
	for x.h.Len() > 0 {
		t := x.h[0]
		if ts, ok := x.cur[t.topic]; ok && ts == t.ts {
			return t, true
		}
		heap.Pop(&x.h)
	}
	return retainedTimer{}, false
}

// putRetained writes rec as the shard's record of topic.
func (st *shardState) putRetained(res *applyResult, topic string, rec *storagev1.RetainedRecord) {
	res.writes = append(res.writes, write{key: retainedKey(st.shard, topic), value: encodeValue(rec)})
	st.retained.track(topic, rec)
}

// putRetainedValue writes the retained record of a message stored as val
// (its stored value, as storedValue builds it). A value that does not
// decode (never: the message was validated) writes nothing.
func (st *shardState) putRetainedValue(res *applyResult, val []byte) {
	m := &storagev1.Message{}
	if err := proto.Unmarshal(val[1:], m); err != nil {
		return
	}
	st.putRetained(res, m.Topic, retainedRecordFor(m, st.shard))
}

func applyRetainedDelete(st *shardState, c cmdRetainedDelete) applyResult {
	ts := max(nextTimestamp(st.lastTs, c.nowUs), c.aboveUs+1)
	st.lastTs = ts
	var res applyResult
	st.putRetained(&res, c.topic, &storagev1.RetainedRecord{TimestampUs: ts, Shard: uint32(st.shard)})
	res.writes = append(res.writes, clockWrite(st))
	return res
}

func applyRetainedExpire(st *shardState, c cmdRetainedExpire) applyResult {
	var res applyResult
	for n := 0; n < maxRetainedExpiries; n++ {
		t, ok := st.retained.next()
		if !ok || t.at > c.nowUs {
			break
		}
		heap.Pop(&st.retained.h)
		st.putRetained(&res, t.topic, &storagev1.RetainedRecord{TimestampUs: t.ts, Shard: t.shard, PublisherClientId: t.publisher})
	}
	return res
}

// retainedDue reports whether a retained message of the shard expired and
// still has its payload. Writer only.
func (s *shard) retainedDue() bool {
	now := s.db.opts.Now().UnixMicro()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.mu.st.retained.next()
	return ok && t.at <= now
}

// loadRetained indexes the expiring retained records of a loaded shard.
func loadRetained(db *DB, st *shardState) error {
	p := len(retainedPrefix(st.shard))
	return db.scan(retainedPrefix(st.shard), func(k, v []byte) error {
		rec := &storagev1.RetainedRecord{}
		if err := decodeValue(k, v, rec); err != nil {
			return err
		}
		st.retained.track(string(k[p:]), rec)
		return nil
	})
}
