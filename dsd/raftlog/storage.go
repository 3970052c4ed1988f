package raftlog

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ErrCompactBeyondSnapshot: Compact was asked to drop entries that the
// latest snapshot does not cover.
var ErrCompactBeyondSnapshot = errors.New("raftlog: compaction past the latest snapshot")

// Storage is one raft group's log, hard state, conf state and latest
// snapshot in Pebble. It implements raft.Storage; Save, SetConfState,
// CreateSnapshot and Compact write it. Writers must be one goroutine (the
// group's Ready loop); readers may be any.
type Storage struct {
	db    *pebble.DB
	group uint64

	// cutting is held for writing while a Save deletes entries (a snapshot
	// or a conflicting tail) and for reading around the reads of entries,
	// so a reader never sees bounds from before a cut and keys from after.
	cutting sync.RWMutex

	mu struct {
		sync.Mutex
		hs   *pb.HardState
		cs   *pb.ConfState
		snap *pb.Snapshot
		// truncIndex and truncTerm name the entry just before the first
		// one in the log; last is the last index (truncIndex when empty).
		truncIndex, truncTerm, last uint64
	}
}

var _ raft.Storage = (*Storage)(nil)

// Open loads group's state from db. A group never written is empty: no
// hard state, an empty conf state and log, index 0.
func Open(db *pebble.DB, group uint64) (*Storage, error) {
	s := &Storage{db: db, group: group}
	hs, cs, snap := &pb.HardState{}, &pb.ConfState{}, &pb.Snapshot{}
	for _, r := range []struct {
		sub byte
		m   proto.Message
	}{{subHardState, hs}, {subConfState, cs}, {subSnapshot, snap}} {
		if _, err := s.get(groupKey(group, r.sub), r.m); err != nil {
			return nil, err
		}
	}
	s.mu.hs, s.mu.cs, s.mu.snap = hs, cs, pb.EnsureSnapshot(snap)
	key := groupKey(group, subTruncated)
	v, closer, err := db.Get(key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("raftlog: read %x: %w", key, err)
	default:
		s.mu.truncIndex, s.mu.truncTerm, err = decodeTruncated(key, v)
		closer.Close()
		if err != nil {
			return nil, err
		}
	}
	s.mu.last = s.mu.truncIndex
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: entryKey(group, 0), UpperBound: groupKey(group, subEntry+1)})
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if it.Last() {
		var e pb.Entry
		if err := decode(it.Key(), it.Value(), &e); err != nil {
			it.Close()
			return nil, err
		}
		s.mu.last = e.GetIndex()
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	return s, nil
}

// Group is the raft group id this Storage keeps.
func (s *Storage) Group() uint64 { return s.group }

// get reads one framed protobuf value; found is false when it is absent.
func (s *Storage) get(key []byte, m proto.Message) (found bool, err error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("raftlog: read %x: %w", key, err)
	}
	defer closer.Close()
	return true, decode(key, v, m)
}

// InitialState returns the saved hard state and the last applied conf
// state (SetConfState), or the latest snapshot's when that is newer.
func (s *Storage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.mu.hs).(*pb.HardState), proto.Clone(s.mu.cs).(*pb.ConfState), nil
}

// Entries returns the entries [lo, hi), at least one, then up to maxSize
// bytes in all.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	s.cutting.RLock()
	defer s.cutting.RUnlock()
	s.mu.Lock()
	trunc, last := s.mu.truncIndex, s.mu.last
	s.mu.Unlock()
	if lo <= trunc {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 || lo > hi {
		return nil, fmt.Errorf("raftlog: entries [%d, %d) out of bounds (%d, %d]", lo, hi, trunc, last)
	}
	if lo == hi {
		return nil, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: entryKey(s.group, lo), UpperBound: entryKey(s.group, hi)})
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	defer it.Close()
	var out []*pb.Entry
	var size uint64
	next := lo
	for valid := it.First(); valid; valid = it.Next() {
		e := &pb.Entry{}
		if err := decode(it.Key(), it.Value(), e); err != nil {
			return nil, err
		}
		if e.GetIndex() != next {
			break // a gap: compacted under us
		}
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
		next++
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if len(out) == 0 || (next < hi && (len(out) == 0 || size <= maxSize)) {
		// Fewer than asked and not cut by size: a concurrent Compact.
		s.mu.Lock()
		defer s.mu.Unlock()
		if lo <= s.mu.truncIndex {
			return nil, raft.ErrCompacted
		}
		return nil, raft.ErrUnavailable
	}
	return out, nil
}

// Term returns the term of entry i, for i in [FirstIndex()-1, LastIndex()].
func (s *Storage) Term(i uint64) (uint64, error) {
	s.cutting.RLock()
	defer s.cutting.RUnlock()
	s.mu.Lock()
	trunc, truncTerm, last := s.mu.truncIndex, s.mu.truncTerm, s.mu.last
	s.mu.Unlock()
	switch {
	case i == trunc:
		return truncTerm, nil
	case i < trunc:
		return 0, raft.ErrCompacted
	case i > last:
		return 0, raft.ErrUnavailable
	}
	var e pb.Entry
	found, err := s.get(entryKey(s.group, i), &e)
	if err != nil {
		return 0, err
	}
	if !found {
		return s.termAfterRace(i)
	}
	return e.GetTerm(), nil
}

// termAfterRace answers Term for an entry that vanished between reading
// the bounds and reading it: it was compacted (or cut by a conflict).
func (s *Storage) termAfterRace(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i == s.mu.truncIndex {
		return s.mu.truncTerm, nil
	}
	if i < s.mu.truncIndex {
		return 0, raft.ErrCompacted
	}
	return 0, raft.ErrUnavailable
}

// LastIndex is the index of the last entry (the truncated index when the
// log is empty).
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.last, nil
}

// FirstIndex is the index of the first entry that may be in the log.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.truncIndex + 1, nil
}

// Snapshot returns the latest snapshot (empty before the first).
func (s *Storage) Snapshot() (*pb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.mu.snap).(*pb.Snapshot), nil
}

// Save makes a Ready's state durable, in one synced batch: snap (when not
// empty) replaces the whole log, entries are appended (replacing any
// conflicting tail), and hs (when not empty) is recorded. Call it before
// sending the Ready's messages.
func (s *Storage) Save(hs *pb.HardState, entries []*pb.Entry, snap *pb.Snapshot) error {
	s.mu.Lock()
	trunc, truncTerm, last, cs, cur := s.mu.truncIndex, s.mu.truncTerm, s.mu.last, s.mu.cs, s.mu.snap
	s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	cut := false
	if snap != nil && !raft.IsEmptySnap(snap) {
		cut = true
		md := snap.GetMetadata()
		if md.GetIndex() <= cur.GetMetadata().GetIndex() {
			return raft.ErrSnapOutOfDate
		}
		_ = b.DeleteRange(entryKey(s.group, 0), groupKey(s.group, subEntry+1), nil)
		_ = b.Set(groupKey(s.group, subSnapshot), encode(snap), nil)
		trunc, truncTerm, last = md.GetIndex(), md.GetTerm(), md.GetIndex()
		_ = b.Set(groupKey(s.group, subTruncated), encodeTruncated(trunc, truncTerm), nil)
		cs = pb.EnsureConfState(md.GetConfState())
		_ = b.Set(groupKey(s.group, subConfState), encode(cs), nil)
		cur = snap
	}
	// Entries at or below the truncated index are already covered.
	for len(entries) > 0 && entries[0].GetIndex() <= trunc {
		entries = entries[1:]
	}
	if len(entries) > 0 {
		first := entries[0].GetIndex()
		if first > last+1 {
			return fmt.Errorf("raftlog: append at %d leaves a gap after %d", first, last)
		}
		if first <= last {
			cut = true
			_ = b.DeleteRange(entryKey(s.group, first), entryKey(s.group, last+1), nil)
		}
		for _, e := range entries {
			_ = b.Set(entryKey(s.group, e.GetIndex()), encode(e), nil)
		}
		last = entries[len(entries)-1].GetIndex()
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		_ = b.Set(groupKey(s.group, subHardState), encode(hs), nil)
	}
	if b.Empty() {
		return nil
	}
	if cut {
		s.cutting.Lock()
		defer s.cutting.Unlock()
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: save: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if hs != nil && !raft.IsEmptyHardState(hs) {
		s.mu.hs = proto.Clone(hs).(*pb.HardState)
	}
	s.mu.truncIndex, s.mu.truncTerm, s.mu.last, s.mu.cs, s.mu.snap = trunc, truncTerm, last, cs, cur
	return nil
}

// SetConfState records the conf state after an applied conf change, so a
// restart starts raft with the membership it had, not the older one of the
// latest snapshot.
func (s *Storage) SetConfState(cs *pb.ConfState) error {
	if err := s.db.Set(groupKey(s.group, subConfState), encode(cs), pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: save conf state: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.cs = proto.Clone(cs).(*pb.ConfState)
	return nil
}

// CreateSnapshot records a snapshot of the state machine at applied index
// i, with conf state cs and the state machine's data. It does not drop
// entries; Compact does.
func (s *Storage) CreateSnapshot(i uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, error) {
	s.mu.Lock()
	cur, last := s.mu.snap.GetMetadata().GetIndex(), s.mu.last
	s.mu.Unlock()
	if i <= cur {
		return nil, raft.ErrSnapOutOfDate
	}
	if i > last {
		return nil, fmt.Errorf("raftlog: snapshot at %d past the last index %d", i, last)
	}
	term, err := s.Term(i)
	if err != nil {
		return nil, err
	}
	snap := &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(i), Term: new(term), ConfState: proto.Clone(pb.EnsureConfState(cs)).(*pb.ConfState)}}
	if err := s.db.Set(groupKey(s.group, subSnapshot), encode(snap), pebble.Sync); err != nil {
		return nil, fmt.Errorf("raftlog: save snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.snap = snap
	return proto.Clone(snap).(*pb.Snapshot), nil
}

// Compact drops the entries up to and including i; Term(i) still answers.
// i may not pass the latest snapshot.
func (s *Storage) Compact(i uint64) error {
	s.mu.Lock()
	trunc, last, snapIndex := s.mu.truncIndex, s.mu.last, s.mu.snap.GetMetadata().GetIndex()
	s.mu.Unlock()
	if i <= trunc {
		return raft.ErrCompacted
	}
	if i > last {
		return fmt.Errorf("raftlog: compact %d past the last index %d", i, last)
	}
	if i > snapIndex {
		return fmt.Errorf("%w: %d > %d", ErrCompactBeyondSnapshot, i, snapIndex)
	}
	term, err := s.Term(i)
	if err != nil {
		return err
	}
	// The bounds move first, so a reader never looks for a deleted entry
	// that the bounds still promise.
	s.mu.Lock()
	s.mu.truncIndex, s.mu.truncTerm = i, term
	s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(entryKey(s.group, 0), entryKey(s.group, i+1), nil)
	_ = b.Set(groupKey(s.group, subTruncated), encodeTruncated(i, term), nil)
	// Not synced: losing a compaction on a crash only keeps entries longer.
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("raftlog: compact: %w", err)
	}
	return nil
}

// Destroy deletes everything of the group (a replica removed from this
// site). The Storage must not be used afterwards.
func (s *Storage) Destroy() error {
	p := groupPrefix(s.group)
	end := groupPrefix(s.group + 1)
	if s.group == ^uint64(0) {
		end = append(append([]byte(nil), Prefix...), 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	}
	if err := s.db.DeleteRange(p, end, pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: destroy group %d: %w", s.group, err)
	}
	return nil
}

// AddSnapshotLearner adds learner to the conf state of the latest
// snapshot (none: nothing to do). A learner added after the snapshot is
// sent it to catch up, and raft refuses a snapshot whose conf state does
// not name the receiver; the conf change that added it is at a later index,
// and applying it again to the restored state changes nothing.
func (s *Storage) AddSnapshotLearner(learner uint64) error {
	s.mu.Lock()
	cur := s.mu.snap
	s.mu.Unlock()
	if cur.GetMetadata().GetIndex() == 0 {
		return nil
	}
	cs := cur.GetMetadata().GetConfState()
	if slices.Contains(cs.GetVoters(), learner) || slices.Contains(cs.GetLearners(), learner) {
		return nil
	}
	snap := proto.Clone(cur).(*pb.Snapshot)
	md := snap.GetMetadata()
	md.ConfState = proto.Clone(pb.EnsureConfState(cs)).(*pb.ConfState)
	md.ConfState.Learners = append(md.ConfState.Learners, learner)
	if err := s.db.Set(groupKey(s.group, subSnapshot), encode(snap), pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: save snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.snap == cur {
		s.mu.snap = snap
	}
	return nil
}
