package storage

import (
	"container/heap"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/retainedorder"
)

// Wills are durable timers in the session's shard (ARCHITECTURE.md §6,
// docs/sessions.md "Wills"). An abnormal end of a connection arms the timer:
// SessionRecord.will_at_us = now + will delay, but no later than the
// session's end (disconnected_at + expiry; expiry 0: at once) [MQTT-3.1.3-9,
// MQTT 5 §3.1.3.2.2]. DISCONNECT 0x00 discards the will [MQTT-3.1.2-10]; the
// same session resuming (OpenSession without clean start) cancels it; a
// session that ends (clean start, expiry, delete) publishes a pending will
// in the batch that ends it.
//
// Firing is one batch of the shard's command sequence: the will message is
// stored in its stream (publisher = client id), the timer is cleared, and
// the record is marked (will_fired_at_us); so a will fires exactly once,
// also across crashes. A retained will writes its retained record in the
// same batch (retained.go). Earlier versions left a pending-retained key
//
//	S 0A | timestamp (8)   pending retained will -> Message (as stored)
//
// for a writer of their own; Open turns the keys a crash left into retained
// records (loadWills), and cmdWillRetainedDone, which deleted them, is still
// applied from the logs of replicated shards.
//
// The timers of a shard are indexed in memory (shardState.wills) and
// checked by the shard writer at every idle tick (IdleTickInterval) and at
// every reqTick, so a will fires at most one tick late.

// tagWillRetained is the keyspace of pending retained wills.
const tagWillRetained byte = 0x0A

// maxWillsPerBatch bounds the wills one firing batch stores.
const maxWillsPerBatch = 256

func willRetainedKey(shard int, ts int64) []byte {
	return binary.BigEndian.AppendUint64(shardPrefix(shard, tagWillRetained), uint64(ts))
}

// willTimer is one armed timer in the index.
type willTimer struct {
	due int64
	cid string
}

// willIndex is a min-heap of armed timers by (due, client id). Entries are
// never removed when a timer is cancelled or re-armed: an entry is live only
// while the session's record still has will_at_us == due.
type willIndex struct{ h willHeap }

type willHeap []willTimer

func (h willHeap) Len() int { return len(h) }
func (h willHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].cid < h[j].cid
}
func (h willHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *willHeap) Push(x any)   { *h = append(*h, x.(willTimer)) }
func (h *willHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (x *willIndex) push(due int64, cid string) { heap.Push(&x.h, willTimer{due: due, cid: cid}) }

// next returns the earliest live timer, dropping dead entries on the way.
func (st *shardState) nextWill() (willTimer, bool) {
	for st.wills.h.Len() > 0 {
		t := st.wills.h[0]
		if s := st.sessions[t.cid]; s != nil && s.rec.WillAtUs == t.due {
			return t, true
		}
		heap.Pop(&st.wills.h)
	}
	return willTimer{}, false
}

// armWill records an armed timer of rec in the index.
func (st *shardState) armWill(rec *storagev1.SessionRecord) {
	if rec.WillAtUs != 0 {
		st.wills.push(rec.WillAtUs, rec.ClientId)
	}
}

// willDue is when the will of a connection that ended abnormally at nowUs
// is due: after the will delay, and no later than the session's end.
func willDue(rec *storagev1.SessionRecord, nowUs int64) int64 {
	d := int64(rec.GetWill().GetDelayIntervalS())
	if rec.ExpiryIntervalS != neverExpires {
		d = min(d, int64(rec.ExpiryIntervalS))
	}
	return nowUs + d*1e6
}

// fireWill stores the will of rec (a record apply is building, not yet in
// st) as a message of the client, clears the will and its timer, and marks
// rec with the stored timestamp. It appends its writes to res. A will whose
// topic the layout refuses is dropped (res.willsDropped).
func fireWill(st *shardState, res *applyResult, rec *storagev1.SessionRecord, nowUs int64) {
	w := rec.Will
	rec.Will, rec.WillAtUs = nil, 0
	if w == nil || w.Message == nil {
		return
	}
	g := st.current()
	l, err := g.layout.learn(w.Message.Topic)
	if err != nil {
		res.willsDropped = append(res.willsDropped, fmt.Sprintf("client %q topic %q: %v", rec.ClientId, w.Message.Topic, err))
		return
	}
	ts := nextTimestamp(st.lastTs, nowUs)
	st.lastTs, st.lastDataTs = ts, ts
	res.writes = appendEdges(res.writes, st.shard, g, l.NewEdges)
	res.streamsChanged = res.streamsChanged || len(l.NewEdges) > 0
	stored := storedMessage(w.Message, rec.ClientId, ts)
	val := encodeValue(stored)
	g.counts[l.Static]++
	res.writes = g.layout.appendMessage(res.writes, st.shard, g.meta.Id, l, ts, val)
	res.tailMessage(g, l.Static, ts, val)
	res.touch(g, l, ts)
	res.writes = append(res.writes,
		write{key: countKey(st.shard, g.meta.Id, g.layout.staticBytes(l.Static)), value: encodeValue(&storagev1.StreamCount{Count: g.counts[l.Static]})},
		clockWrite(st),
	)
	if stored.Retain {
		st.putRetained(res, stored.Topic, retainedRecordFor(stored, st.shard))
	}
	res.messages++
	res.bytes += len(val)
	res.sess.willsFired++
	rec.WillFiredAtUs = ts
}

// Will commands of the shard's command sequence.
type (
	// cmdFireWills fires the wills due at nowUs (at most maxWillsPerBatch).
	cmdFireWills struct{ nowUs int64 }
	// cmdWillRetainedDone deletes pending-retained keys whose update the
	// retained writer committed.
	cmdWillRetainedDone struct {
		nowUs int64
		ts    []int64
	}
)

func (cmdFireWills) isCommand()        {}
func (cmdWillRetainedDone) isCommand() {}

func applyFireWills(st *shardState, c cmdFireWills) applyResult {
	var res applyResult
	for n := 0; n < maxWillsPerBatch; n++ {
		t, ok := st.nextWill()
		if !ok || t.due > c.nowUs {
			break
		}
		heap.Pop(&st.wills.h)
		s := st.sessions[t.cid]
		rec := proto.CloneOf(s.rec)
		fireWill(st, &res, rec, c.nowUs)
		s2 := *s
		s2.rec = rec
		st.sessions[t.cid] = &s2
		res.writes = append(res.writes, write{key: sessionKey(st.shard, t.cid, subSessionRecord, nil), value: encodeValue(rec)})
	}
	return res
}

func applyWillRetainedDone(st *shardState, c cmdWillRetainedDone) applyResult {
	var res applyResult
	for _, ts := range c.ts {
		res.writes = append(res.writes, write{key: willRetainedKey(st.shard, ts)})
	}
	return res
}

// willsDue reports whether a will timer of the shard is due. Writer only.
func (s *shard) willsDue() bool {
	now := s.db.opts.Now().UnixMicro()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.mu.st.nextWill()
	return ok && t.due <= now
}

// loadWills indexes the armed timers of a loaded shard and writes the
// retained records of the retained wills an earlier version left pending,
// in one synced batch, before the shard runs.
func loadWills(db *DB, st *shardState) error {
	for _, cid := range sortedKeys(st.sessions) {
		st.armWill(st.sessions[cid].rec)
	}
	var pending []*storagev1.Message
	err := db.scan(shardPrefix(st.shard, tagWillRetained), func(k, v []byte) error {
		m := &storagev1.Message{}
		if err := decodeValue(k, v, m); err != nil {
			return err
		}
		pending = append(pending, m)
		return nil
	})
	if err != nil || len(pending) == 0 {
		return err
	}
	// The earlier version's writer may have applied a will, and a later
	// retained publish of the shard after it: a will's record replaces
	// only an older one. The scan goes in timestamp order.
	var res applyResult
	current := map[string]*storagev1.RetainedRecord{}
	for _, m := range pending {
		cur, ok := current[m.Topic]
		if !ok {
			cur = &storagev1.RetainedRecord{}
			if found, err := db.getValue(retainedKey(st.shard, m.Topic), cur); err != nil {
				return err
			} else if !found {
				cur = nil
			}
		}
		if rec := retainedRecordFor(m, st.shard); retainedorder.Newer(cur, rec) == rec {
			current[m.Topic] = rec
			st.putRetained(&res, m.Topic, rec)
		}
		res.writes = append(res.writes, write{key: willRetainedKey(st.shard, m.TimestampUs)})
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	writeBatch(b, res.writes)
	opts := pebble.Sync
	if db.opts.UnsafeNoSync {
		opts = pebble.NoSync
	}
	if err := b.Commit(opts); err != nil {
		return wrapPebble("apply pending retained wills", err)
	}
	db.log.Info("applied retained wills left pending by a crash", "shard", st.shard, "count", len(pending))
	return nil
}

// willAt returns the armed will timer of clientID (tests).
func (db *DB) willAt(clientID string) (dueUs int64, ok bool) {
	s := db.shards[db.ShardOf(clientID)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss := s.mu.st.sessions[clientID]
	if ss == nil || ss.rec.WillAtUs == 0 {
		return 0, false
	}
	return ss.rec.WillAtUs, true
}
