package storage

// # Retained messages
//
// Retained messages live in one site-wide keyspace with its own single
// writer (retained_writer.go), separate from the shards:
//
//	FF FF 20 | topic name (raw bytes)   retained record -> RetainedRecord
//
// The value uses the framing of every value (version byte 1, then the
// deterministic protobuf of storagev1.RetainedRecord). A record is either the
// topic's retained message (the stored Message, with its timestamp,
// publisher and properties) or a tombstone (no message). Keys sort by topic
// name bytes, so the topics under a literal prefix are one key range.
//
// # Order
//
// Every update carries an order key (timestamp_us, shard, publisher client
// id), compared in that order, and replaces the record only if its order key
// is greater. A deletion (a retained message with an empty payload,
// [MQTT-3.3.1-6]) writes a tombstone with its order key, so an older update
// that arrives later (a racing Store of another shard, a retry after a
// crash) cannot resurrect an older message. So for one topic the record ends
// as the update with the greatest order key, whatever the arrival order.
//
// The consequence: "latest" is by shard clocks, which are independent
// microsecond clocks (max(now, last+1)). Two publishes to one topic from
// publishers of different shards within the same microsecond are ordered by
// shard id, then client id, not by arrival; and a shard whose clock is ahead
// of the wall clock (after the wall clock was set back) wins over later
// publishes of other shards until the wall clock catches up.
//
// # Expiry and the sweep
//
// A message with an MQTT 5 Message Expiry Interval expires at timestamp +
// interval (ExpiresAtUs); an expired record is never returned. The writer
// sweeps the keyspace in chunks every retainedSweepInterval: an expired
// message becomes a tombstone, and a tombstone (or expired record) whose
// timestamp is older than retainedGrace is deleted. Updates older than
// retainedGrace are refused (they could otherwise resurrect a value whose
// tombstone was swept), so a tombstone is needed only that long.
//
// # Store
//
// Store applies the retained update of each topic that the Store's retained
// messages name (the last such message per topic) after the messages'
// commit and before replying, in a synced commit of the retained writer. A
// crash between the two commits leaves the messages without their retained
// update; the client's retry is answered as a duplicate, and Store then
// re-applies the update with the timestamp the message was stored with
// (found by reading it back from the publisher's shard), which, by the
// order rule, changes the record only if it is older. A retained message no
// longer in a live generation is not re-applied.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// tagRetained is the site-wide keyspace of retained records (after FF FF).
// On disk: never changes.
const tagRetained byte = 0x20

// retainedOperatorShard is the shard of an operator's DeleteRetained, above
// every real shard id.
const retainedOperatorShard = siteShard

const (
	// retainedGrace is how long a tombstone is kept, and how old an update
	// may be.
	retainedGrace = 24 * time.Hour
	// retainedSweepInterval is the pause between two sweep chunks.
	retainedSweepInterval = 10 * time.Second
	// retainedSweepChunk bounds the keys one sweep step visits.
	retainedSweepChunk = 4096
	// retainedMaxScan bounds the keys one MatchRetained call visits.
	retainedMaxScan = 50_000
	// MaxRetainedLimit is the largest page MatchRetained returns.
	MaxRetainedLimit = 10_000
)

func retainedPrefix() []byte { return shardPrefix(siteShard, tagRetained) }

func retainedKey(topic string) []byte { return append(retainedPrefix(), topic...) }

// retainedOrder is a record's order key.
type retainedOrder struct {
	ts        int64
	shard     uint32
	publisher string
}

func orderOf(r *storagev1.RetainedRecord) retainedOrder {
	return retainedOrder{ts: r.TimestampUs, shard: r.Shard, publisher: r.PublisherClientId}
}

// less reports whether a sorts before b.
func (a retainedOrder) less(b retainedOrder) bool {
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	if a.shard != b.shard {
		return a.shard < b.shard
	}
	return a.publisher < b.publisher
}

// retainedRecordFor is the record of a stored retained message (m has its
// timestamp and publisher filled in): a tombstone for an empty payload.
func retainedRecordFor(m *storagev1.Message, shard int) *storagev1.RetainedRecord {
	r := &storagev1.RetainedRecord{TimestampUs: m.TimestampUs, Shard: uint32(shard), PublisherClientId: m.PublisherClientId}
	if len(m.Payload) == 0 {
		return r
	}
	r.Message = m
	if p := m.GetProperties(); p != nil && p.MessageExpiryInterval != nil {
		r.ExpiresAtUs = m.TimestampUs + int64(p.GetMessageExpiryInterval())*int64(time.Second/time.Microsecond)
	}
	return r
}

// live reports whether a record holds a message that has not expired at
// nowUs.
func retainedLive(r *storagev1.RetainedRecord, nowUs int64) bool {
	return r != nil && r.Message != nil && (r.ExpiresAtUs == 0 || nowUs < r.ExpiresAtUs)
}

// retainedUpdate is one change for the retained writer.
type retainedUpdate struct {
	topic string
	// rec is the new record of a Store (a tombstone for a deletion).
	rec *storagev1.RetainedRecord
	// operator marks DeleteRetained: a tombstone above the current record.
	operator bool
}

// nextRetained decides an update against the current record (nil: none) at
// nowUs. It returns the record to write (nil: nothing changes) and, for an
// operator's delete, whether a live message was deleted. Pure.
func nextRetained(cur *storagev1.RetainedRecord, u retainedUpdate, nowUs int64) (next *storagev1.RetainedRecord, deleted bool) {
	if u.operator {
		if !retainedLive(cur, nowUs) {
			return nil, false
		}
		return &storagev1.RetainedRecord{TimestampUs: max(nowUs, cur.TimestampUs), Shard: retainedOperatorShard}, true
	}
	if u.rec.TimestampUs < nowUs-retainedGrace.Microseconds() {
		return nil, false // older than any tombstone we still keep
	}
	if cur != nil && !orderOf(cur).less(orderOf(u.rec)) {
		return nil, false
	}
	return u.rec, false
}

// GetRetained returns the retained message of a topic name; ok is false when
// the topic has none (or it expired).
func (db *DB) GetRetained(topic string) (m *storagev1.Message, ok bool, err error) {
	if err := lts.ValidateTopicName(topic, lts.DefaultMaxTopicLevels); err != nil {
		return nil, false, fmt.Errorf("%w: %q: %w", ErrInvalidTopic, truncate(topic), err)
	}
	var rec storagev1.RetainedRecord
	found, err := db.getValue(retainedKey(topic), &rec)
	if err != nil || !found || !retainedLive(&rec, db.opts.Now().UnixMicro()) {
		return nil, false, err
	}
	return rec.Message, true, nil
}

// DeleteRetained clears the retained message of a topic name (an operator's
// action) and returns after the change is durable. deleted is false when
// the topic had no retained message. A Store of a newer retained message
// (by timestamp) sets it again.
func (db *DB) DeleteRetained(ctx context.Context, topic string) (deleted bool, err error) {
	if err := lts.ValidateTopicName(topic, lts.DefaultMaxTopicLevels); err != nil {
		return false, fmt.Errorf("%w: %q: %w", ErrInvalidTopic, truncate(topic), err)
	}
	res, err := db.retained.do(ctx, []retainedUpdate{{topic: topic, operator: true}})
	if err != nil {
		return false, err
	}
	return res[0], nil
}

// MatchRetained returns, in topic name order, the retained messages whose
// topic names match filter and sort after pageToken ("" at start), at most
// limit (1..MaxRetainedLimit) of them. next is the token of the following
// page, "" when the listing is complete; it is the last topic name visited,
// so a page can be short (even empty) and still have a next page: one call
// visits at most retainedMaxScan keys. Filters starting with a wildcard do
// not match topic names starting with '$' [MQTT-4.7.2-1].
//
// The scan is limited to the key range of the filter's literal prefix (the
// levels before the first wildcard, see retainedRange), so its cost is the
// number of retained topics under that prefix, not the number of retained
// topics.
func (db *DB) MatchRetained(ctx context.Context, filter, pageToken string, limit int) (msgs []*storagev1.Message, next string, err error) {
	levels, err := validateFilter(filter)
	if err != nil {
		return nil, "", err
	}
	if limit < 1 || limit > MaxRetainedLimit {
		return nil, "", fmt.Errorf("%w: match retained: limit %d (1..%d)", ErrInvalidArgument, limit, MaxRetainedLimit)
	}
	lower, upper := retainedRange(levels)
	if pageToken != "" {
		if after := append(retainedKey(pageToken), 0); string(after) > string(lower) {
			lower = after
		}
	}
	if upper != nil && string(lower) >= string(upper) {
		return nil, "", nil
	}
	iter, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, "", wrapPebble("match retained", err)
	}
	defer iter.Close()
	skipDollar := levels[0] == "+" || levels[0] == "#"
	nowUs := db.opts.Now().UnixMicro()
	plen := len(retainedPrefix())
	visited := 0
	for valid := iter.First(); valid; valid = iter.Next() {
		topic := string(iter.Key()[plen:])
		if skipDollar && strings.HasPrefix(topic, "$") {
			// [MQTT-4.7.2-1]: jump over every '$' topic at once.
			if !iter.SeekGE(retainedKey("%")) { // '%' = '$' + 1
				break
			}
			topic = string(iter.Key()[plen:])
		}
		if visited++; visited > retainedMaxScan || (visited%256 == 0 && ctx.Err() != nil) {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
			return msgs, next, nil
		}
		next = topic
		if !lts.MatchTopic(filter, topic) {
			continue
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return nil, "", wrapPebble("match retained", err)
		}
		var rec storagev1.RetainedRecord
		if err := decodeValue(iter.Key(), v, &rec); err != nil {
			return nil, "", err
		}
		if !retainedLive(&rec, nowUs) {
			continue
		}
		msgs = append(msgs, rec.Message)
		if len(msgs) == limit {
			return msgs, next, nil
		}
	}
	if err := iter.Error(); err != nil {
		return nil, "", wrapPebble("match retained", err)
	}
	return msgs, "", nil
}

// retainedRange is the key range [lower, upper) that holds every topic
// name matching the filter (split into levels): the names that start with
// the levels before the first wildcard. Before a '+' that includes the
// separator ("a/+" needs "a/"); before a '#' it is "a" itself or "a/..."
// ("a/#" matches "a"), i.e. [a, a0). A filter without wildcards is one key.
// upper is nil for no bound.
func retainedRange(levels []string) (lower, upper []byte) {
	for i, l := range levels {
		switch {
		case i == 0 && (l == "+" || l == "#"):
			p := retainedPrefix()
			return p, prefixEnd(p)
		case l == "+":
			p := retainedKey(strings.Join(levels[:i], "/") + "/")
			return p, prefixEnd(p)
		case l == "#":
			p := strings.Join(levels[:i], "/")
			return retainedKey(p), prefixEnd(retainedKey(p + "/"))
		}
	}
	k := retainedKey(strings.Join(levels, "/"))
	return k, append(k[:len(k):len(k)], 0)
}
