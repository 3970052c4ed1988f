package storage

import (
	"context"
	"fmt"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// StoreResult is the answer to a Store.
type StoreResult struct {
	// Shard is the publisher's shard.
	Shard int
	// Duplicate: the producer sequence numbers were already committed;
	// nothing was stored and TimestampsUs is empty.
	Duplicate bool
	// TimestampsUs are the assigned timestamps, one per message, strictly
	// increasing.
	TimestampsUs []int64
}

// Store stores msgs, published by clientID, in the client's shard and
// returns after the commit (fsynced unless UnsafeNoSync). With a producer,
// the Store is idempotent (see Producer). The messages are not modified;
// the stored copies get the shard's timestamps and PublisherClientId =
// clientID.
//
// A cancelled ctx returns early with its error; the messages may still be
// committed (retry with the same producer sequence numbers to find out).
//
// Messages with the retain flag also update the shard's retained records
// (retained.go), in the same commit.
func (db *DB) Store(ctx context.Context, clientID string, msgs []*storagev1.Message, p *Producer) (StoreResult, error) {
	shardID := db.ShardOf(clientID)
	res := StoreResult{Shard: shardID}
	in, err := ingestMessagesOf(msgs)
	if err != nil {
		return res, err
	}
	bytes, err := db.validateStore(clientID, in, p)
	if err != nil {
		return res, err
	}
	if err := db.writeRefusal(); err != nil {
		return res, err
	}
	s := db.shards[shardID]
	rep, err := s.doWrite(ctx, &request{
		kind:  reqStore,
		store: &storeReq{clientID: clientID, msgs: in, producer: p},
		items: len(msgs),
		bytes: bytes,
	})
	if err != nil {
		return res, err
	}
	return s.storeOutcome(res, rep)
}

// StoreAsync is Store for the ingest path: the messages arrive encoded
// (ParseIngestMessage), and done is called exactly once with the result
// instead of the caller waiting, so that one goroutine can keep many Stores
// in flight. done runs on the shard's goroutines (or on the caller's, for a
// Store refused at once) and must not block. Stores of one client submitted
// in order are committed and answered in that order. StoreAsync blocks only
// while the shard's writer is busy taking an earlier request (backpressure).
func (db *DB) StoreAsync(clientID string, msgs []IngestMessage, p *Producer, done func(StoreResult, error)) {
	shardID := db.ShardOf(clientID)
	res := StoreResult{Shard: shardID}
	bytes, err := db.validateStore(clientID, msgs, p)
	if err == nil {
		err = db.writeRefusal()
	}
	if err == nil && db.closing.Load() {
		err = ErrClosed
	}
	if err != nil {
		done(res, err)
		return
	}
	s := db.shards[shardID]
	r := &request{
		kind:     reqStore,
		store:    &storeReq{clientID: clientID, msgs: msgs, producer: p},
		items:    len(msgs),
		bytes:    bytes,
		enqueued: time.Now(),
	}
	r.then = func(rep reply) { done(s.storeOutcome(res, rep)) }
	select {
	case s.reqCh <- r:
	case <-db.ctx.Done():
		done(res, ErrClosed)
	case <-db.space.lowChan():
		// The writer may be stuck in a commit that Pebble stalls on a full
		// disk: refuse rather than block the ingest stream.
		done(res, db.space.gaveUp())
	}
}

// storeOutcome turns a shard's reply to a Store into its result, counting
// refusals and duplicates.
func (s *shard) storeOutcome(res StoreResult, rep reply) (StoreResult, error) {
	if rep.err != nil {
		s.stats.refused.Add(1)
		return res, rep.err
	}
	if rep.out.duplicate {
		s.stats.duplicates.Add(1)
	}
	res.Duplicate = rep.out.duplicate
	res.TimestampsUs = rep.out.timestamps
	return res, nil
}

// validateStore checks a Store's arguments and returns its size in bytes.
func (db *DB) validateStore(clientID string, msgs []IngestMessage, p *Producer) (int, error) {
	if len(clientID) > MaxClientIDBytes {
		return 0, fmt.Errorf("%w: store: client id of %d bytes (at most %d)", ErrInvalidArgument, len(clientID), MaxClientIDBytes)
	}
	if len(msgs) == 0 {
		return 0, fmt.Errorf("%w: store: no messages", ErrInvalidArgument)
	}
	if p != nil {
		if p.ClientID != clientID {
			return 0, fmt.Errorf("%w: store: producer client id %q differs from %q", ErrInvalidArgument, p.ClientID, clientID)
		}
		if p.FirstSeq == 0 {
			return 0, fmt.Errorf("%w: store: producer sequence numbers start at 1", ErrInvalidArgument)
		}
	}
	total := 0
	for i, m := range msgs {
		if err := lts.ValidateTopicName(m.Topic, lts.DefaultMaxTopicLevels); err != nil {
			return 0, fmt.Errorf("%w: message %d: %w", ErrInvalidTopic, i, err)
		}
		if m.QoS > 2 {
			return 0, fmt.Errorf("%w: store: message %d: QoS %d", ErrInvalidArgument, i, m.QoS)
		}
		n := len(m.Encoded)
		if n > db.opts.MaxMessageBytes {
			return 0, fmt.Errorf("%w: message %d is %d bytes (at most %d)", ErrMessageTooLarge, i, n, db.opts.MaxMessageBytes)
		}
		total += n
	}
	return total, nil
}
