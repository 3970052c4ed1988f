package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Replication of a shard (docs/replication.md). A shard with a Replicator
// does not apply its commands when it flushes them: its writer encodes
// each command (with the leader's clock reading, so every replica assigns
// the same timestamps) and proposes it as one log entry; every replica,
// the leader included, applies the committed entries in log order through
// ApplyReplicated, on the shard's writer, with the same apply as a local
// shard and the entry's index in the same Pebble batch. A Store is
// answered once its entry is applied on the leader and that batch is
// committed. A shard without a Replicator (a single site, or a replication
// factor of 1) runs exactly as before.

// ErrNotReplicated: a command the entry codec does not know was sent to a
// replicated shard (a bug: every command the writer builds has a kind).
var ErrNotReplicated = errors.New("storage: this command cannot be replicated")

// maxEntryBytes bounds the message bytes of one proposed batch of Stores
// (a larger Store goes alone): an entry travels in a raft message between
// sites, under dsd's gRPC receive limit.
const maxEntryBytes = 256 << 10

// Replicator is a shard's raft group, as the shard sees it.
type Replicator interface {
	// Propose proposes one entry. It returns an error (naming the
	// leader when it can) when this site does not lead the group, and
	// must not block for long.
	Propose(data []byte) error
	// CanServe is nil when this site leads the group: it takes the
	// shard's commands. Otherwise it is why not (naming the leader).
	CanServe() error
	// CanRead is nil when this site may serve a read of the shard: it
	// leads, and a majority of the replicas acknowledged it recently
	// enough that no other leader can have been elected since (a leader
	// cut off from them stops reading before the others can elect one).
	CanRead() error
}

// replicatorRef boxes a Replicator for an atomic.Pointer.
type replicatorRef struct{ r Replicator }

// shardRepl is a shard's replication state.
type shardRepl struct {
	r atomic.Pointer[replicatorRef]
	// wake is poked when a proposal ends without an entry (the leader
	// changed): the writer looks at its gate again.
	wake chan struct{}
	mu   struct {
		sync.Mutex
		next uint64
		// pending are this site's proposals not yet applied, by id:
		// their requests. Whoever removes one answers its requests.
		pending map[uint64][]*request
	}
}

// SetReplicator makes shard a replicated shard (nil: a local shard
// again). Proposals of the previous Replicator still pending are failed
// with the new one's CanServe (ErrNotReplicated without one).
func (db *DB) SetReplicator(shard int, r Replicator) error {
	s, err := db.shard(shard)
	if err != nil {
		return err
	}
	if r == nil {
		s.repl.r.Store(nil)
	} else {
		s.repl.r.Store(&replicatorRef{r: r})
	}
	s.failProposals(nil)
	return nil
}

// LeaderLost fails the proposals of shard still pending: the leader that
// proposed them lost leadership, and an entry it proposed may never be
// committed. Their callers learn the new Replicator's CanServe; a retry
// with the same producer sequence numbers finds out (a duplicate if the
// entry was committed after all).
func (db *DB) LeaderLost(shard int) {
	if s, err := db.shard(shard); err == nil {
		s.failProposals(nil)
	}
}

// errLeaderChanged answers the proposals of a leader that still leads
// after a leader change (it lost leadership and won it back).
var errLeaderChanged = errors.New("storage: the leader changed before the entry was committed; retry")

// failProposals answers the pending proposals with err, or when err is
// nil with the Replicator's CanServe.
func (s *shard) failProposals(err error) {
	if err == nil {
		err = ErrNotReplicated
		if ref := s.repl.r.Load(); ref != nil {
			if err = ref.r.CanServe(); err == nil {
				err = errLeaderChanged
			}
		}
	}
	s.repl.mu.Lock()
	lost := s.repl.mu.pending
	s.repl.mu.pending = nil
	s.repl.mu.Unlock()
	for _, reqs := range lost {
		for _, r := range reqs {
			r.finish(reply{err: err})
		}
	}
	if len(lost) > 0 {
		select {
		case s.repl.wake <- struct{}{}:
		default:
		}
	}
}

// proposals is the number of this site's proposals of the shard not yet
// applied or failed.
func (s *shard) proposals() int {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	return len(s.repl.mu.pending)
}

// ReadRefusal is why this site must not serve a read of shard: a
// replicated shard it does not lead, or whose leadership a quorum has not
// confirmed within the read lease (nil: it may; an unknown shard is
// ErrInvalidArgument).
func (db *DB) ReadRefusal(shard int) error {
	s, err := db.shard(shard)
	if err != nil {
		return err
	}
	return s.readRefusal()
}

// readRefusal is why this site must not serve a read of shard (nil: it
// may).
func (s *shard) readRefusal() error {
	if ref := s.repl.r.Load(); ref != nil {
		return ref.r.CanRead()
	}
	return nil
}

// ledElsewhere: the shard is replicated and this site does not lead it
// (its leader does the shard's own work: sweeps, lease expiry, follow-ups).
func (s *shard) ledElsewhere() bool {
	ref := s.repl.r.Load()
	return ref != nil && ref.r.CanServe() != nil
}

// propose proposes cmd for reqs; it reports whether the proposal is
// pending (its requests are answered when its entry is applied, or when
// the leader changes). Otherwise every request was answered here.
func (s *shard) propose(r Replicator, cmd command, reqs []*request) bool {
	fail := func(err error) bool {
		for _, q := range reqs {
			q.finish(reply{err: err})
		}
		return false
	}
	if err := s.db.failErr(); err != nil {
		return fail(err)
	}
	if err := r.CanServe(); err != nil {
		return fail(err)
	}
	s.repl.mu.Lock()
	s.repl.mu.next++
	id := s.repl.mu.next
	if s.repl.mu.pending == nil {
		s.repl.mu.pending = make(map[uint64][]*request)
	}
	s.repl.mu.pending[id] = reqs
	s.repl.mu.Unlock()
	data, err := appendEntry(make([]byte, 0, 64), s.db.origin, id, cmd)
	if err == nil {
		err = r.Propose(data)
	}
	if err != nil {
		s.repl.mu.Lock()
		_, mine := s.repl.mu.pending[id]
		delete(s.repl.mu.pending, id)
		s.repl.mu.Unlock()
		if mine {
			return fail(err)
		}
		// Taken by an apply or failed by a leader change meanwhile.
	}
	return true
}

// takeProposal removes this site's proposal id and returns its requests
// (ok false: not pending, or another site's entry).
func (s *shard) takeProposal(origin, id uint64) ([]*request, bool) {
	if origin != s.db.origin {
		return nil, false
	}
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	reqs, ok := s.repl.mu.pending[id]
	delete(s.repl.mu.pending, id)
	return reqs, ok
}

// ApplyReplicated applies the committed entry at index of shard's raft
// group: on the shard's writer, in the order of the calls (the log's),
// with index written in the command's Pebble batch. It returns once the
// writer took the entry, before the batch commits; a malformed entry is
// ErrCorruption (nothing applied). Entries carrying no data are skipped
// by the caller.
func (db *DB) ApplyReplicated(shard int, index uint64, data []byte) error {
	s, err := db.shard(shard)
	if err != nil {
		return err
	}
	origin, id, cmd, err := decodeEntry(data)
	if err != nil {
		return fmt.Errorf("%w: shard %d entry %d: %w", ErrCorruption, shard, index, err)
	}
	r := &request{kind: reqApply, entry: &appliedEntry{index: index, origin: origin, id: id, cmd: cmd}, enqueued: time.Now(), done: make(chan reply, 1)}
	select {
	case s.reqCh <- r:
		return nil
	case <-db.ctx.Done():
		return ErrClosed
	}
}

// ReplicatedApplied is the index of the last entry of shard's raft group
// whose writes are committed (0: none): raft's Applied at a restart.
func (db *DB) ReplicatedApplied(shard int) (uint64, error) {
	if _, err := db.shard(shard); err != nil {
		return 0, err
	}
	return readApplied(db.pdb, shard)
}

// readApplied reads shard's applied index from r (the DB, or a snapshot
// of it); 0 when none is recorded.
func readApplied(r pebble.Reader, shard int) (uint64, error) {
	v, closer, err := r.Get(shardAppliedKey(shard))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, nil
		}
		return 0, wrapPebble("read the applied index", err)
	}
	defer closer.Close()
	n, err := decodeIndex(v)
	if err != nil {
		return 0, fmt.Errorf("%w: shard %d applied index: %w", ErrCorruption, shard, err)
	}
	return n, nil
}

// SyncReplicatedApplied makes every write committed so far durable (one
// synced, empty WAL record: the WAL is in commit order, and applied
// entries are committed without an fsync of their own) and returns the
// index of shard's last applied entry among them: the raft log may be
// truncated up to it.
func (db *DB) SyncReplicatedApplied(shard int) (uint64, error) {
	n, err := db.ReplicatedApplied(shard)
	if err != nil {
		return 0, err
	}
	if err := db.pdb.LogData([]byte{}, pebble.Sync); err != nil {
		return 0, wrapPebble("sync the applied entries", err)
	}
	return n, nil
}

// appliedEntry is a reqApply's entry.
type appliedEntry struct {
	index, origin, id uint64
	cmd               command
}

func appliedWrite(shard int, index uint64) write {
	return write{key: shardAppliedKey(shard), value: binary.BigEndian.AppendUint64([]byte{valueVersion1}, index)}
}

// applyEntry applies a committed entry on the writer and returns its
// batch for the committer (never nil: the index is written even when the
// command was refused). mine: the batch answers this site's proposal.
func (s *shard) applyEntry(e *appliedEntry) (f *inflightBatch) {
	reqs, _ := s.takeProposal(e.origin, e.id)
	if err := s.db.failErr(); err != nil {
		for _, r := range reqs {
			r.finish(reply{err: err})
		}
		reqs = nil
	}
	f = s.applyAndCommit(e.cmd, reqs)
	if f == nil {
		// Refused as a whole (the requests have their answer) or failed:
		// the index still advances.
		s.mu.RLock()
		lastTs := s.mu.st.lastTs
		s.mu.RUnlock()
		f = &inflightBatch{shard: s, started: time.Now(), lastTs: lastTs}
	}
	f.writes = append(f.writes, appliedWrite(s.id, e.index))
	f.logged = true
	switch e.cmd.(type) {
	case cmdAddGeneration, cmdDropGeneration:
		f.generationsChanged = true
	}
	return f
}
