package storage

// # Retained messages
//
// A retained message lives in its publisher's shard, next to the message:
//
//	S 04 | topic name (raw bytes)   retained record -> RetainedRecord
//
// The apply that stores a retained message (a Store, or a will) writes the
// record in the same Pebble batch as the message. So the record is exactly
// as durable as the message, it is part of the shard's command sequence (on
// a replicated shard every replica writes it), and it travels in the shard's
// snapshots. A shard holds per topic the last retained update of its own
// publishers: a message, or a tombstone (no message) left by an empty
// payload [MQTT-3.3.1-6], an expired message or an operator's delete.
//
// # Reading: the greatest order key wins
//
// A topic has records in as many shards as it had retained publishers of
// different shards. Every record carries an order key (timestamp_us, shard,
// publisher client id), compared in that order. A read takes, per topic, the
// record with the greatest order key among the shards; when that record is
// a tombstone or an expired message, the topic has no retained message.
// Within one shard timestamps strictly increase, so a shard's newer record
// always replaces its older one (no read before the write).
//
// The consequence: "latest" is by shard clocks, which are independent
// microsecond clocks (max(now, last+1)). Two publishes to one topic from
// publishers of different shards within the same microsecond are ordered by
// shard id, then client id, not by arrival; and a shard whose clock is ahead
// of the wall clock (after the wall clock was set back) wins over later
// publishes of other shards until the wall clock catches up.
//
// # Tombstones and expiry
//
// A tombstone hides the older records of its topic in the other shards, so
// it stays until its shard writes a newer record of that topic: the topic
// name plus about 30 bytes per cleared topic and shard. A message with an
// MQTT 5 Message Expiry Interval expires at timestamp + interval
// (ExpiresAtUs) and is never returned after that; the shard keeps a timer
// per expiring record (retained_expiry.go) and, when it is due, a command of
// the shard's sequence turns the record into a tombstone with the same order
// key, which frees the payload.
//
// # Operator deletes
//
// DeleteRetained writes a tombstone in the topic's own shard (ShardOf of the
// topic name) with a timestamp above the greatest record it read, so it
// hides every record there was; a later publish sets the topic again.
//
// # Data dirs of earlier versions
//
// Earlier versions kept every record in one site-wide keyspace (FF FF 20)
// with a writer of its own. Open moves those records into the shard
// keyspaces (migrateRetained), each into the shard its order key names.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/retainedorder"
	"github.com/stratamq/strata/lts"
)

// tagRetained is a shard's keyspace of retained records. On disk: never
// changes.
const tagRetained byte = 0x04

const (
	// retainedMaxScan bounds the topics one MatchRetained call visits.
	retainedMaxScan = 50_000
	// MaxRetainedLimit is the largest page MatchRetained returns.
	MaxRetainedLimit = 10_000
	// maxDeleteSkew bounds how far above the shard's clock an operator's
	// tombstone may be asked to go (DeleteRetainedAbove): the greatest
	// record it must hide comes from another shard's clock, which may run
	// ahead by the clock skew between sites, not by more.
	maxDeleteSkew = 10 * time.Minute
)

func retainedPrefix(shard int) []byte { return shardPrefix(shard, tagRetained) }

func retainedKey(shard int, topic string) []byte {
	return append(retainedPrefix(shard), topic...)
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

// retainedLive reports whether a record holds a message that has not
// expired at nowUs.
func retainedLive(r *storagev1.RetainedRecord, nowUs int64) bool {
	return r != nil && r.Message != nil && (r.ExpiresAtUs == 0 || nowUs < r.ExpiresAtUs)
}

// RetainedEntry is a topic's record with the greatest order key among some
// shards. A Record without a Message is a tombstone: the topic has no
// retained message there, and older records elsewhere are hidden.
type RetainedEntry struct {
	Topic  string
	Record *storagev1.RetainedRecord
}

// readable checks that this site may serve reads of every shard in shards
// and returns them (nil: every shard of the DB).
func (db *DB) readable(shards []int) ([]int, error) {
	if shards == nil {
		shards = make([]int, len(db.shards))
		for i := range shards {
			shards[i] = i
		}
	}
	for _, id := range shards {
		s, err := db.shard(id)
		if err != nil {
			return nil, err
		}
		if err := s.readRefusal(); err != nil {
			return nil, err
		}
	}
	return shards, nil
}

// GetRetained returns the retained message of a topic name; ok is false when
// the topic has none (or it expired). Every shard must be readable here.
func (db *DB) GetRetained(topic string) (m *storagev1.Message, ok bool, err error) {
	rec, err := db.currentRetained(topic)
	if err != nil || !retainedLive(rec, db.opts.Now().UnixMicro()) {
		return nil, false, err
	}
	return rec.Message, true, nil
}

// currentRetained is the record of topic with the greatest order key among
// every shard (nil: none).
func (db *DB) currentRetained(topic string) (*storagev1.RetainedRecord, error) {
	if err := lts.ValidateTopicName(topic, lts.DefaultMaxTopicLevels); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidTopic, truncate(topic), err)
	}
	shards, err := db.readable(nil)
	if err != nil {
		return nil, err
	}
	return db.retainedOf(shards, topic)
}

// retainedOf is the record of topic with the greatest order key among
// shards (nil: none).
func (db *DB) retainedOf(shards []int, topic string) (*storagev1.RetainedRecord, error) {
	var best *storagev1.RetainedRecord
	for _, s := range shards {
		var rec storagev1.RetainedRecord
		found, err := db.getValue(retainedKey(s, topic), &rec)
		if err != nil {
			return nil, err
		}
		if found {
			best = retainedorder.Newer(best, &rec)
		}
	}
	return best, nil
}

// DeleteRetained clears the retained message of a topic name (an operator's
// action) and returns after the change is durable. deleted is false when
// the topic had no retained message. A Store of a newer retained message
// sets it again. Every shard must be readable here, and the topic's shard
// led here: a cluster routes the read and the delete itself
// (DeleteRetainedAbove).
func (db *DB) DeleteRetained(ctx context.Context, topic string) (deleted bool, err error) {
	cur, err := db.currentRetained(topic)
	if err != nil || !retainedLive(cur, db.opts.Now().UnixMicro()) {
		return false, err
	}
	return true, db.DeleteRetainedAbove(ctx, topic, cur.TimestampUs)
}

// DeleteRetainedAbove writes a tombstone for topic in the topic's shard
// (ShardOf(topic)) with a timestamp above aboveUs, the timestamp of the
// greatest record of the topic the caller found in any shard.
func (db *DB) DeleteRetainedAbove(ctx context.Context, topic string, aboveUs int64) error {
	if err := lts.ValidateTopicName(topic, lts.DefaultMaxTopicLevels); err != nil {
		return fmt.Errorf("%w: %q: %w", ErrInvalidTopic, truncate(topic), err)
	}
	if limit := db.opts.Now().Add(maxDeleteSkew).UnixMicro(); aboveUs > limit || aboveUs < 0 {
		return fmt.Errorf("%w: delete retained: timestamp %d is not within %v of this site's clock", ErrInvalidArgument, aboveUs, maxDeleteSkew)
	}
	if err := db.writeRefusal(); err != nil {
		return err
	}
	s := db.shards[db.ShardOf(topic)]
	_, err := s.doWrite(ctx, &request{kind: reqSession, mkCmd: func(now int64) command {
		return cmdRetainedDelete{nowUs: now, topic: topic, aboveUs: aboveUs}
	}})
	return err
}

// MatchRetained returns, in topic name order, the retained messages whose
// topic names match filter and sort after pageToken ("" at start), at most
// limit (1..MaxRetainedLimit) of them, merged over every shard (which must
// all be readable here). next is the token of the following page, "" when
// the listing is complete; it is the last topic name visited, so a page can
// be short (even empty) and still have a next page: one call visits at most
// retainedMaxScan topics. Filters starting with a wildcard do not match
// topic names starting with '$' [MQTT-4.7.2-1].
//
// The scan is limited to the key range of the filter's literal prefix (the
// levels before the first wildcard, see retainedRange), so its cost is the
// number of retained topics under that prefix, not the number of retained
// topics.
func (db *DB) MatchRetained(ctx context.Context, filter, pageToken string, limit int) (msgs []*storagev1.Message, next string, err error) {
	nowUs := db.opts.Now().UnixMicro()
	next, err = db.matchRetained(ctx, nil, filter, pageToken, limit, func(topic string, rec *storagev1.RetainedRecord) bool {
		if retainedLive(rec, nowUs) {
			msgs = append(msgs, rec.Message)
		}
		return len(msgs) == limit
	})
	if err != nil {
		return nil, "", err
	}
	return msgs, next, nil
}

// MatchRetainedRecords is MatchRetained over the given shards only, for a
// caller that merges the answers of several sites: it returns, per
// matching topic, the record with the greatest order key among these shards,
// tombstones included (an expired message comes as a tombstone with its
// order key), at most limit of them.
func (db *DB) MatchRetainedRecords(ctx context.Context, shards []int, filter, pageToken string, limit int) (recs []RetainedEntry, next string, err error) {
	if len(shards) == 0 {
		return nil, "", fmt.Errorf("%w: match retained: no shards", ErrInvalidArgument)
	}
	nowUs := db.opts.Now().UnixMicro()
	next, err = db.matchRetained(ctx, shards, filter, pageToken, limit, func(topic string, rec *storagev1.RetainedRecord) bool {
		if rec.Message != nil && !retainedLive(rec, nowUs) {
			rec = &storagev1.RetainedRecord{TimestampUs: rec.TimestampUs, Shard: rec.Shard, PublisherClientId: rec.PublisherClientId}
		}
		recs = append(recs, RetainedEntry{Topic: topic, Record: rec})
		return len(recs) == limit
	})
	if err != nil {
		return nil, "", err
	}
	return recs, next, nil
}

// matchRetained visits, in topic name order, the topics after pageToken
// that match filter, each with its greatest record among shards (nil: all
// of them), until visit reports a full page. It returns the next page
// token as MatchRetained documents it.
func (db *DB) matchRetained(ctx context.Context, shards []int, filter, pageToken string, limit int,
	visit func(topic string, rec *storagev1.RetainedRecord) (full bool)) (next string, err error) {
	levels, err := validateFilter(filter)
	if err != nil {
		return "", err
	}
	if limit < 1 || limit > MaxRetainedLimit {
		return "", fmt.Errorf("%w: match retained: limit %d (1..%d)", ErrInvalidArgument, limit, MaxRetainedLimit)
	}
	if shards, err = db.readable(shards); err != nil {
		return "", err
	}
	if !strings.ContainsAny(filter, "+#") {
		// A topic name: one point read per shard, no iterators.
		if pageToken >= filter {
			return "", nil
		}
		rec, err := db.retainedOf(shards, filter)
		if err != nil || rec == nil {
			return "", err
		}
		visit(filter, rec)
		return "", nil
	}
	lower, upper := retainedRange(levels)
	if pageToken != "" {
		if after := pageToken + "\x00"; after > lower {
			lower = after
		}
	}
	if upper != "" && lower >= upper {
		return "", nil
	}
	m := &retainedMerge{skipDollar: levels[0] == "+" || levels[0] == "#"}
	defer m.close()
	for _, s := range shards {
		if err := m.add(db, s, lower, upper); err != nil {
			return "", err
		}
	}
	visited := 0
	for {
		topic, rec, ok, err := m.next()
		if err != nil {
			return "", err
		}
		if !ok {
			return "", nil
		}
		if visited++; visited > retainedMaxScan || (visited%256 == 0 && ctx.Err() != nil) {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			return next, nil
		}
		next = topic
		if lts.MatchTopic(filter, topic) && visit(topic, rec) {
			return next, nil
		}
	}
}

// retainedMerge walks the retained keyspaces of several shards in topic
// order, one iterator each, and yields per topic the record with the
// greatest order key. With skipDollar it jumps over the '$' topics.
type retainedMerge struct {
	skipDollar bool
	its        []*retainedIter
}

type retainedIter struct {
	it    *pebble.Iterator
	plen  int
	shard int
	valid bool
}

func (m *retainedMerge) add(db *DB, shard int, lower, upper string) error {
	p := retainedPrefix(shard)
	o := &pebble.IterOptions{LowerBound: append(slices.Clip(p), lower...)}
	if upper != "" {
		o.UpperBound = append(slices.Clip(p), upper...)
	} else {
		o.UpperBound = prefixEnd(p)
	}
	it, err := db.pdb.NewIter(o)
	if err != nil {
		return wrapPebble("match retained", err)
	}
	ri := &retainedIter{it: it, plen: len(p), shard: shard}
	m.its = append(m.its, ri)
	ri.valid = it.First()
	m.skip(ri)
	return nil
}

func (ri *retainedIter) topic() string { return string(ri.it.Key()[ri.plen:]) }

// skip moves ri past the '$' topics when the filter does not match them
// ('%' is '$' + 1).
func (m *retainedMerge) skip(ri *retainedIter) {
	if m.skipDollar && ri.valid && strings.HasPrefix(ri.topic(), "$") {
		ri.valid = ri.it.SeekGE(append(ri.it.Key()[:ri.plen:ri.plen], '%'))
	}
}

// next yields the least topic of every iterator and its greatest record,
// and moves past it; ok is false at the end.
func (m *retainedMerge) next() (topic string, rec *storagev1.RetainedRecord, ok bool, err error) {
	first := true
	for _, ri := range m.its {
		if !ri.valid {
			continue
		}
		if t := ri.topic(); first || t < topic {
			topic, first = t, false
		}
	}
	if first {
		for _, ri := range m.its {
			if err := ri.it.Error(); err != nil {
				return "", nil, false, wrapPebble("match retained", err)
			}
		}
		return "", nil, false, nil
	}
	for _, ri := range m.its {
		if !ri.valid || ri.topic() != topic {
			continue
		}
		v, err := ri.it.ValueAndErr()
		if err != nil {
			return "", nil, false, wrapPebble("match retained", err)
		}
		r := &storagev1.RetainedRecord{}
		if err := decodeValue(ri.it.Key(), v, r); err != nil {
			return "", nil, false, err
		}
		rec = retainedorder.Newer(rec, r)
		ri.valid = ri.it.Next()
		m.skip(ri)
	}
	return topic, rec, true, nil
}

func (m *retainedMerge) close() {
	for _, ri := range m.its {
		_ = ri.it.Close()
	}
}

// retainedRange is the topic name range [lower, upper) that holds every
// topic name matching the filter (split into levels): the names that start
// with the levels before the first wildcard. Before a '+' that includes the
// separator ("a/+" needs "a/"); before a '#' it is "a" itself or "a/..."
// ("a/#" matches "a"), i.e. [a, a0). A filter without wildcards is one
// name. upper is "" for no bound.
func retainedRange(levels []string) (lower, upper string) {
	for i, l := range levels {
		switch {
		case i == 0 && (l == "+" || l == "#"):
			return "", ""
		case l == "+":
			p := strings.Join(levels[:i], "/") + "/"
			return p, string(prefixEnd([]byte(p)))
		case l == "#":
			p := strings.Join(levels[:i], "/")
			return p, string(prefixEnd([]byte(p + "/")))
		}
	}
	k := strings.Join(levels, "/")
	return k, k + "\x00"
}
