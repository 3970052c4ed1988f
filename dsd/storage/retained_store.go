package storage

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// storeRetained applies the retained updates of a committed Store: for each
// topic that the Store's retained messages name, the last of them. For a
// duplicate Store, the timestamp each message was stored with is read back
// from the shard (see retained.go, "Store"). It returns once the updates are
// durable.
func (db *DB) storeRetained(ctx context.Context, clientID string, shard int, msgs []*storagev1.Message, res StoreResult) error {
	n := 0
	for _, m := range msgs {
		if m.Retain {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	updates := make([]retainedUpdate, 0, n)
	at := make(map[string]int, n) // topic -> index in updates
	for i, m := range msgs {
		if !m.Retain {
			continue
		}
		var ts int64
		if !res.Duplicate {
			ts = res.TimestampsUs[i]
		}
		// A duplicate Store, or a QoS 2 message whose packet id was held
		// (timestamp 0: stored by an earlier Store), re-applies the update
		// of the message stored before.
		if ts == 0 {
			var ok bool
			var err error
			if ts, ok, err = db.findStoredTimestamp(ctx, shard, clientID, m); err != nil {
				return err
			} else if !ok {
				db.log.Debug("retained message of a duplicate store not found; not re-applied", "client_id", clientID, "topic", m.Topic)
				continue
			}
		}
		u := retainedUpdate{topic: m.Topic, rec: retainedRecordFor(storedMessage(m, clientID, ts), shard)}
		if j, ok := at[m.Topic]; ok {
			if orderOf(updates[j].rec).less(orderOf(u.rec)) {
				updates[j] = u
			}
			continue
		}
		at[m.Topic] = len(updates)
		updates = append(updates, u)
	}
	if len(updates) == 0 {
		return nil
	}
	_, err := db.retained.do(ctx, updates)
	return err
}

// findWindows are the look-back windows of findStoredTimestamp, tried in
// order: a retry normally follows its first attempt closely.
var findWindows = []time.Duration{2 * time.Second, 2 * time.Minute, 2 * time.Hour, retainedGrace}

// findStoredTimestamp finds the timestamp that a message of a duplicate
// Store was stored with: the latest message in the publisher's shard with
// the same topic, publisher, payload, QoS, retain flag and properties, no
// older than retainedGrace. ok is false when no such message is in a live
// generation. It scans the topic's streams backwards in growing time
// windows, so a recent message costs a few seeks.
func (db *DB) findStoredTimestamp(ctx context.Context, shardID int, clientID string, m *storagev1.Message) (ts int64, ok bool, err error) {
	s := db.shards[shardID]
	type genMatches struct {
		id           uint64
		since, until int64
		layout       *wildcardLayout
		matches      []lts.Match
	}
	levels := lts.SplitTopic(m.Topic)
	var gens []genMatches
	s.mu.RLock()
	for _, g := range s.mu.st.gens {
		gens = append(gens, genMatches{id: g.meta.Id, since: g.meta.SinceUs, until: g.meta.UntilUs, layout: g.layout, matches: g.layout.trie.Match(levels)})
	}
	s.mu.RUnlock()

	floor := max(db.opts.Now().UnixMicro()-retainedGrace.Microseconds(), 0)
	to := s.assigned.Load() + 1 // exclusive
	r := &resolved{s: s, filter: m.Topic}
	for _, w := range findWindows {
		from := max(to-w.Microseconds(), floor)
		if from >= to {
			break
		}
		for _, g := range gens {
			lo, hi := max(from, g.since), to
			if g.until != 0 {
				hi = min(hi, g.until)
			}
			if lo >= hi {
				continue
			}
			for _, mt := range g.matches {
				// next reads the next entries of the window, by the
				// generation's layout.
				var next func() ([]Entry, bool, error)
				if g.layout.timeFirst() {
					lf := leapfrog{
						db: db, stats: &s.stats, keys: g.layout.tkeys, shard: shardID, gen: g.id,
						static: mt.Static, staticBytes: g.layout.staticBytes(mt.Static), cs: mt.Varying, filter: m.Topic,
						from: uint64(lo), to: uint64(hi), max: 256,
					}
					next = func() ([]Entry, bool, error) {
						lf.out = lf.out[:0]
						exhausted, err := lf.run(ctx)
						return lf.out, exhausted, err
					}
				} else {
					f, err := g.layout.keys.Filter(mt.Static, mt.Varying, uint64(lo), uint64(hi))
					if err != nil {
						return 0, false, err
					}
					sc := scan{db: db, r: r, f: f, prefix: genSubPrefix(shardID, g.id, subData), max: 256}
					next = func() ([]Entry, bool, error) {
						sc.out = sc.out[:0]
						exhausted, err := sc.run(ctx)
						return sc.out, exhausted, err
					}
				}
				for {
					out, exhausted, err := next()
					if err != nil {
						return 0, false, err
					}
					for _, e := range out {
						if e.Message.TimestampUs > ts && e.Message.PublisherClientId == clientID && sameContent(e.Message, m) {
							ts, ok = e.Message.TimestampUs, true
						}
					}
					if exhausted || len(out) == 0 {
						break
					}
				}
			}
		}
		if ok {
			return ts, true, nil
		}
		to = from
	}
	return 0, false, nil
}

// sameContent compares what a publisher sent (not the timestamp or the
// publisher).
func sameContent(a, b *storagev1.Message) bool {
	return a.Topic == b.Topic && a.Qos == b.Qos && a.Retain == b.Retain &&
		bytes.Equal(a.Payload, b.Payload) && proto.Equal(a.GetProperties(), b.GetProperties())
}
