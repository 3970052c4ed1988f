package storage

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

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
// Messages with the retain flag also update the retained keyspace (see
// retained.go) before Store returns; an error there is returned although the
// messages are committed, and a retry (a duplicate) re-applies the update.
func (db *DB) Store(ctx context.Context, clientID string, msgs []*storagev1.Message, p *Producer) (StoreResult, error) {
	shardID := db.ShardOf(clientID)
	res := StoreResult{Shard: shardID}
	bytes, err := db.validateStore(clientID, msgs, p)
	if err != nil {
		return res, err
	}
	if err := db.writeRefusal(); err != nil {
		return res, err
	}
	s := db.shards[shardID]
	rep, err := s.doWrite(ctx, &request{
		kind:  reqStore,
		store: &storeReq{clientID: clientID, msgs: msgs, producer: p},
		items: len(msgs),
		bytes: bytes,
	})
	if err != nil {
		return res, err
	}
	if rep.err != nil {
		s.stats.refused.Add(1)
		return res, rep.err
	}
	if rep.out.duplicate {
		s.stats.duplicates.Add(1)
	}
	res.Duplicate = rep.out.duplicate
	res.TimestampsUs = rep.out.timestamps
	// Retained messages: after the messages' commit, before the reply.
	if err := db.storeRetained(ctx, clientID, shardID, msgs, res); err != nil {
		return res, err
	}
	return res, nil
}

// validateStore checks a Store's arguments and returns its size in bytes.
func (db *DB) validateStore(clientID string, msgs []*storagev1.Message, p *Producer) (int, error) {
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
		if m == nil {
			return 0, fmt.Errorf("%w: store: message %d is nil", ErrInvalidArgument, i)
		}
		if err := lts.ValidateTopicName(m.Topic, lts.DefaultMaxTopicLevels); err != nil {
			return 0, fmt.Errorf("%w: message %d: %w", ErrInvalidTopic, i, err)
		}
		if m.Qos > 2 {
			return 0, fmt.Errorf("%w: store: message %d: QoS %d", ErrInvalidArgument, i, m.Qos)
		}
		n := proto.Size(m)
		if n > db.opts.MaxMessageBytes {
			return 0, fmt.Errorf("%w: message %d is %d bytes (at most %d)", ErrMessageTooLarge, i, n, db.opts.MaxMessageBytes)
		}
		total += n
	}
	return total, nil
}
