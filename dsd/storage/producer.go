package storage

import (
	"fmt"
	"slices"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Producer identifies a Store for idempotent retries: the n messages of the
// Store carry the sequence numbers FirstSeq .. FirstSeq+n-1 of the producer
// (client id) under Epoch.
//
// The client's shard keeps the last accepted (epoch, seq) and, in the same
// batch as the data:
//   - same epoch, FirstSeq == last+1: stored;
//   - same epoch, FirstSeq+n-1 <= last: duplicate, nothing stored;
//   - same epoch, anything else (a gap or a partial overlap): ErrSequenceGap;
//   - a higher epoch (or a producer never seen): the sequence restarts, and
//     FirstSeq must be 1, else ErrSequenceGap;
//   - a lower epoch: ErrStaleEpoch (a fenced writer).
//
// For a client with a session, Epoch must be the session's guard (a Store
// under an older or other guard is ErrStaleEpoch); after the session ended,
// Stores under its guard are refused too.
//
// QoS2PacketIDs, when set, has one entry per message: the MQTT packet id of
// a QoS 2 message (0 for the others). The id is held in the producer record,
// inserted in the same batch as its message; a message whose id is held is
// not stored (its timestamp in StoreResult is 0, and a Store with nothing
// else is a Duplicate) until Release drops the id.
type Producer struct {
	ClientID      string
	Epoch         uint64
	FirstSeq      uint64
	QoS2PacketIDs []uint16
}

// producerOutcome is the decision for one Store.
type producerOutcome int

const (
	producerAccept producerOutcome = iota
	producerDuplicate
)

// checkProducer decides a Store of n messages against the last accepted
// state (nil: never seen). It returns the new state on accept. Pure.
func checkProducer(last *storagev1.ProducerState, p *Producer, n int) (producerOutcome, *storagev1.ProducerState, error) {
	lastSeq := uint64(n) + p.FirstSeq - 1
	if p.FirstSeq == 0 || lastSeq < p.FirstSeq {
		return 0, nil, fmt.Errorf("%w: producer %q: first sequence number %d (n = %d)", ErrInvalidArgument, p.ClientID, p.FirstSeq, n)
	}
	switch {
	case last != nil && last.Closed && p.Epoch <= last.Epoch:
		return 0, nil, fmt.Errorf("%w: producer %q: the session of epoch %d ended", ErrStaleEpoch, p.ClientID, last.Epoch)
	case last == nil || p.Epoch > last.Epoch:
		if p.FirstSeq != 1 {
			return 0, nil, fmt.Errorf("%w: producer %q epoch %d: a new epoch starts at sequence 1, got %d", ErrSequenceGap, p.ClientID, p.Epoch, p.FirstSeq)
		}
	case p.Epoch < last.Epoch:
		return 0, nil, fmt.Errorf("%w: producer %q: epoch %d < %d", ErrStaleEpoch, p.ClientID, p.Epoch, last.Epoch)
	case lastSeq <= last.LastSeq:
		return producerDuplicate, last, nil
	case p.FirstSeq != last.LastSeq+1:
		return 0, nil, fmt.Errorf("%w: producer %q epoch %d: sequence %d..%d after last accepted %d", ErrSequenceGap, p.ClientID, p.Epoch, p.FirstSeq, lastSeq, last.LastSeq)
	}
	next := &storagev1.ProducerState{Epoch: p.Epoch, LastSeq: lastSeq}
	if last != nil && !last.Closed {
		// Held QoS 2 ids belong to the session, across its guards.
		next.HeldQos2Ids = slices.Clone(last.HeldQos2Ids)
	}
	return producerAccept, next, nil
}

// checkSessionProducer refuses a Store whose producer epoch is not the
// guard of the client's session, and malformed QoS 2 packet ids. Pure.
func checkSessionProducer(st *shardState, sr *storeReq) error {
	p := sr.producer
	if ids := p.QoS2PacketIDs; len(ids) > 0 {
		if len(ids) != len(sr.msgs) {
			return fmt.Errorf("%w: store: %d QoS 2 packet ids for %d messages", ErrInvalidArgument, len(ids), len(sr.msgs))
		}
		for j, id := range ids {
			if id != 0 && sr.msgs[j].QoS != 2 {
				return fmt.Errorf("%w: store: message %d has QoS %d and a QoS 2 packet id", ErrInvalidArgument, j, sr.msgs[j].QoS)
			}
		}
	}
	if s := st.sessions[sr.clientID]; s != nil && p.Epoch != s.rec.Guard {
		return fmt.Errorf("%w: producer %q: epoch %d is not the session's guard %d", ErrStaleEpoch, p.ClientID, p.Epoch, s.rec.Guard)
	}
	return nil
}

// holdQoS2IDs inserts the packet ids into next's held set and returns
// which messages are duplicates (id already held); nil without ids.
func holdQoS2IDs(next *storagev1.ProducerState, ids []uint16) []bool {
	if len(ids) == 0 {
		return nil
	}
	skip := make([]bool, len(ids))
	for j, id := range ids {
		if id == 0 {
			continue
		}
		i, found := slices.BinarySearch(next.HeldQos2Ids, uint32(id))
		if found {
			skip[j] = true
			continue
		}
		next.HeldQos2Ids = slices.Insert(next.HeldQos2Ids, i, uint32(id))
	}
	return skip
}

// ProducerState returns the last accepted (epoch, seq) of a client in its
// shard; ok is false for a producer never seen.
func (db *DB) ProducerState(clientID string) (epoch, lastSeq uint64, ok bool) {
	s := db.shards[db.ShardOf(clientID)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.mu.st.producers[clientID]
	if p == nil {
		return 0, 0, false
	}
	return p.Epoch, p.LastSeq, true
}
