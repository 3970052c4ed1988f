package storage

import (
	"fmt"

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
type Producer struct {
	ClientID string
	Epoch    uint64
	FirstSeq uint64
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
	return producerAccept, &storagev1.ProducerState{Epoch: p.Epoch, LastSeq: lastSeq}, nil
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
