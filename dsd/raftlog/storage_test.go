package raftlog

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func openMem(t *testing.T, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest, Logger: quiet{}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func ents(termIndex ...uint64) []*pb.Entry {
	var out []*pb.Entry
	for i := 0; i+1 < len(termIndex); i += 2 {
		out = append(out, &pb.Entry{Term: new(termIndex[i]), Index: new(termIndex[i+1]), Data: fmt.Appendf(nil, "e%d", termIndex[i+1])})
	}
	return out
}

// subject is what the contract compares: raft.MemoryStorage, the
// reference, and Storage.
type subject interface {
	raft.Storage
	append(t *testing.T, e []*pb.Entry)
	applySnapshot(t *testing.T, s *pb.Snapshot) error
	createSnapshot(i uint64, cs *pb.ConfState, data []byte) error
	compact(i uint64) error
}

type memSubject struct{ *raft.MemoryStorage }

func (m memSubject) append(t *testing.T, e []*pb.Entry) {
	if err := m.Append(e); err != nil {
		t.Fatal(err)
	}
}
func (m memSubject) applySnapshot(_ *testing.T, s *pb.Snapshot) error { return m.ApplySnapshot(s) }
func (m memSubject) createSnapshot(i uint64, cs *pb.ConfState, data []byte) error {
	_, err := m.CreateSnapshot(i, cs, data)
	return err
}
func (m memSubject) compact(i uint64) error { return m.Compact(i) }

type pebbleSubject struct{ *Storage }

func (p pebbleSubject) append(t *testing.T, e []*pb.Entry) {
	if err := p.Save(nil, e, nil); err != nil {
		t.Fatal(err)
	}
}
func (p pebbleSubject) applySnapshot(_ *testing.T, s *pb.Snapshot) error { return p.Save(nil, nil, s) }
func (p pebbleSubject) createSnapshot(i uint64, cs *pb.ConfState, data []byte) error {
	_, err := p.CreateSnapshot(i, cs, data)
	return err
}
func (p pebbleSubject) compact(i uint64) error { return p.Compact(i) }

// observe renders everything raft can read from a storage.
func observe(s raft.Storage) string {
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	out := fmt.Sprintf("first=%d last=%d", first, last)
	for i := first - 1; i <= last+1; i++ {
		term, err := s.Term(i)
		out += fmt.Sprintf(" term(%d)=%d/%v", i, term, err)
	}
	if first <= last {
		es, err := s.Entries(first, last+1, 1<<20)
		out += fmt.Sprintf(" entries=%v/%v", renderEnts(es), err)
		es, err = s.Entries(first, last+1, 0)
		out += fmt.Sprintf(" one=%v/%v", renderEnts(es), err)
	}
	_, err := s.Entries(first-1, last+1, 1<<20)
	out += fmt.Sprintf(" below=%v", err)
	snap, _ := s.Snapshot()
	out += fmt.Sprintf(" snap=%d/%d/%q/%v", snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm(), snap.GetData(), snap.GetMetadata().GetConfState().GetVoters())
	return out
}

func renderEnts(es []*pb.Entry) string {
	out := ""
	for _, e := range es {
		out += fmt.Sprintf("[%d/%d %s]", e.GetIndex(), e.GetTerm(), e.GetData())
	}
	return out
}

// TestContract runs one script of appends, conflicting appends, snapshots
// and compactions on raft.MemoryStorage and on Storage, and requires
// that raft sees the same from both after every step, and from a Storage
// reopened on the same Pebble.
func TestContract(t *testing.T) {
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	steps := []struct {
		name string
		do   func(t *testing.T, s subject) error
	}{
		{"empty", func(*testing.T, subject) error { return nil }},
		{"append 1..5", func(t *testing.T, s subject) error { s.append(t, ents(1, 1, 1, 2, 1, 3, 2, 4, 2, 5)); return nil }},
		{"conflict at 4", func(t *testing.T, s subject) error { s.append(t, ents(3, 4, 3, 5, 3, 6)); return nil }},
		{"append 7..8", func(t *testing.T, s subject) error { s.append(t, ents(3, 7, 3, 8)); return nil }},
		{"snapshot at 5", func(_ *testing.T, s subject) error { return s.createSnapshot(5, cs, []byte("state@5")) }},
		{"old snapshot", func(_ *testing.T, s subject) error { return s.createSnapshot(4, cs, nil) }},
		{"compact 3", func(_ *testing.T, s subject) error { return s.compact(3) }},
		{"compact 2 again", func(_ *testing.T, s subject) error { return s.compact(2) }},
		{"compact 5", func(_ *testing.T, s subject) error { return s.compact(5) }},
		{"append overlapping compacted", func(t *testing.T, s subject) error { s.append(t, ents(3, 5, 3, 6, 3, 7, 4, 8, 4, 9)); return nil }},
		{"apply snapshot at 20", func(t *testing.T, s subject) error {
			return s.applySnapshot(t, &pb.Snapshot{Data: []byte("state@20"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(20)), Term: new(uint64(5)), ConfState: cs}})
		}},
		{"append after snapshot", func(t *testing.T, s subject) error { s.append(t, ents(5, 21, 6, 22)); return nil }},
		{"stale snapshot", func(t *testing.T, s subject) error {
			return s.applySnapshot(t, &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(4)), ConfState: cs}})
		}},
	}
	fs := vfs.NewMem()
	db := openMem(t, fs)
	ps, err := Open(db, 7)
	if err != nil {
		t.Fatal(err)
	}
	mem := memSubject{raft.NewMemoryStorage()}
	for _, step := range steps {
		errMem := step.do(t, mem)
		errPebble := step.do(t, pebbleSubject{ps})
		if (errMem == nil) != (errPebble == nil) || (errMem != nil && !errors.Is(errPebble, errMem)) {
			t.Fatalf("%s: MemoryStorage error %v, Storage error %v", step.name, errMem, errPebble)
		}
		want, got := observe(mem), observe(ps)
		if got != want {
			t.Fatalf("%s:\nMemoryStorage %s\nStorage       %s", step.name, want, got)
		}
		reopened, err := Open(db, 7)
		if err != nil {
			t.Fatal(err)
		}
		if again := observe(reopened); again != want {
			t.Fatalf("%s after reopen:\nwant %s\ngot  %s", step.name, want, again)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCompactBeyondSnapshot: entries the latest snapshot does not cover
// stay, so a lagging follower can always be caught up.
func TestCompactBeyondSnapshot(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	s, err := Open(db, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(nil, ents(1, 1, 1, 2, 1, 3), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(2); !errors.Is(err, ErrCompactBeyondSnapshot) {
		t.Fatalf("Compact(2) without a snapshot: %v, want ErrCompactBeyondSnapshot", err)
	}
}

// TestStateSurvivesRestart: hard state, conf state, entries and the
// snapshot come back from a crash clone of the filesystem taken right
// after Save returned (Save syncs).
func TestStateSurvivesRestart(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db := openMem(t, fs)
	s, err := Open(db, 3)
	if err != nil {
		t.Fatal(err)
	}
	hs := &pb.HardState{Term: new(uint64(4)), Vote: new(uint64(2)), Commit: new(uint64(2))}
	if err := s.Save(hs, ents(4, 1, 4, 2, 4, 3), nil); err != nil {
		t.Fatal(err)
	}
	cs := &pb.ConfState{Voters: []uint64{2, 9}}
	if err := s.SetConfState(cs); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2 := openMem(t, crashed)
	defer db2.Close()
	r, err := Open(db2, 3)
	if err != nil {
		t.Fatal(err)
	}
	gotHS, gotCS, _ := r.InitialState()
	if !proto.Equal(gotHS, hs) || !proto.Equal(gotCS, cs) {
		t.Fatalf("after crash: hard state %v conf state %v, want %v %v", gotHS, gotCS, hs, cs)
	}
	if last, _ := r.LastIndex(); last != 3 {
		t.Fatalf("last index %d, want 3", last)
	}
	// Another group on the same engine is untouched and empty.
	o, err := Open(db2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := o.LastIndex(); last != 0 {
		t.Fatalf("group 4 last index %d, want 0", last)
	}
	if err := r.Destroy(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(db2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := r2.LastIndex(); last != 0 {
		t.Fatalf("destroyed group: last index %d, want 0", last)
	}
}

// TestReadsDuringWrites: while one writer appends, overwrites a tail,
// snapshots, compacts and applies snapshots, readers that ask within the
// bounds they just read get the entries they asked for (index and term as
// written) or ErrCompacted, never ErrUnavailable or another entry: raft
// panics on an unavailable entry it was told is stable.
func TestReadsDuringWrites(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	s, err := Open(db, 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 3 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				if first > last {
					continue
				}
				es, err := s.Entries(first, last+1, 1<<20)
				if errors.Is(err, raft.ErrCompacted) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("Entries(%d, %d): %w", first, last+1, err)
					return
				}
				for i, e := range es {
					if e.GetIndex() != first+uint64(i) || e.GetTerm() != e.GetIndex()/10+1 {
						errs <- fmt.Errorf("Entries(%d, %d)[%d] = index %d term %d", first, last+1, i, e.GetIndex(), e.GetTerm())
						return
					}
				}
				if _, err := s.Term(last); err != nil && !errors.Is(err, raft.ErrCompacted) {
					errs <- fmt.Errorf("Term(%d): %w", last, err)
					return
				}
			}
		}()
	}
	var index uint64
	for round := range 200 {
		batch := make([]*pb.Entry, 0, 10)
		for range 10 {
			index++
			batch = append(batch, &pb.Entry{Index: new(index), Term: new(index/10 + 1)})
		}
		if err := s.Save(nil, batch, nil); err != nil {
			t.Fatal(err)
		}
		switch round % 4 {
		case 1: // overwrite the last two entries with the same terms (a retried append)
			if err := s.Save(nil, batch[8:], nil); err != nil {
				t.Fatal(err)
			}
		case 2:
			if _, err := s.CreateSnapshot(index-5, &pb.ConfState{Voters: []uint64{1}}, nil); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(index - 8); err != nil {
				t.Fatal(err)
			}
		case 3:
			if round%20 == 3 { // a snapshot from the leader replaces the log
				index += 10
				snap := &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(index/10 + 1), ConfState: &pb.ConfState{Voters: []uint64{1}}}}
				if err := s.Save(nil, nil, snap); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	close(done)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestAddSnapshotLearner: a learner added after the latest snapshot is
// named in its conf state (raft refuses a snapshot that does not name the
// receiver); without a snapshot nothing changes; it survives a reopen.
func TestAddSnapshotLearner(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	s, err := Open(db, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddSnapshotLearner(4); err != nil {
		t.Fatal(err)
	}
	if snap, _ := s.Snapshot(); !raft.IsEmptySnap(snap) {
		t.Fatalf("a snapshot appeared: %v", snap)
	}
	if err := s.Save(&pb.HardState{Term: new(uint64(1)), Commit: new(uint64(3))}, ents(1, 1, 1, 2, 1, 3), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(2, &pb.ConfState{Voters: []uint64{1, 2}}, []byte("d")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.AddSnapshotLearner(4); err != nil {
			t.Fatal(err)
		}
	}
	s, err = Open(db, 7)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := s.Snapshot()
	if cs := snap.GetMetadata().GetConfState(); !slices.Equal(cs.GetVoters(), []uint64{1, 2}) || !slices.Equal(cs.GetLearners(), []uint64{4}) || snap.GetMetadata().GetIndex() != 2 {
		t.Fatalf("snapshot after adding learner 4: %v", snap.GetMetadata())
	}
}
