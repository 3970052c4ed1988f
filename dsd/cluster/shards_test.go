package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/tracker"

	"github.com/stratamq/strata/dsd/meta"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// fakeMachine is a ShardMachine that records what the shard groups do:
// the replica attached to each shard and the entries applied, in order.
type fakeMachine struct {
	n  int
	mu sync.Mutex
	// attached is the last Attach per shard; starting counts the Attaches
	// that said the shard's role is not known yet.
	attached map[int]ShardReplica
	starting int
	applied  map[int][]string // "index:data"
	lastIdx  map[int]uint64
	lost     int
	// interrupted marks the shards whose install a crash interrupted
	// (reset: nothing applied) until an install completes.
	interrupted map[int]bool
	installs    int
	resets      int
}

func newFakeMachine(n int) *fakeMachine {
	return &fakeMachine{n: n, attached: map[int]ShardReplica{}, applied: map[int][]string{}, lastIdx: map[int]uint64{}, interrupted: map[int]bool{}}
}

func (m *fakeMachine) NShards() int { return m.n }

func (m *fakeMachine) Attach(shard int, r ShardReplica) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attached[shard] = r
	var nl *NotLeaderError
	if r != nil && errors.As(r.CanServe(), &nl) && nl.Starting {
		m.starting++
	}
	return nil
}

func (m *fakeMachine) ApplyReplicated(shard int, index uint64, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index <= m.lastIdx[shard] {
		return fmt.Errorf("entry %d applied again (last %d)", index, m.lastIdx[shard])
	}
	m.applied[shard] = append(m.applied[shard], fmt.Sprintf("%d:%s", index, data))
	m.lastIdx[shard] = index
	return nil
}

func (m *fakeMachine) ReplicatedApplied(shard int) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastIdx[shard], nil
}

func (m *fakeMachine) SyncReplicatedApplied(shard int) (uint64, error) {
	return m.ReplicatedApplied(shard)
}

func (m *fakeMachine) LeaderLost(int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lost++
}

// fakeSnapshot is a fakeMachine's shard: "applied\n" then its entries,
// one a line.
type fakeSnapshot struct {
	applied uint64
	data    []byte
}

func (s *fakeSnapshot) Applied() uint64 { return s.applied }
func (s *fakeSnapshot) Close() error    { return nil }

func (s *fakeSnapshot) NextChunk(dst []byte, maxBytes int) ([]byte, bool, error) {
	n := min(len(s.data), maxBytes)
	dst = append(dst, s.data[:n]...)
	s.data = s.data[n:]
	return dst, len(s.data) == 0, nil
}

func (m *fakeMachine) OpenSnapshot(shard int) (ShardSnapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.interrupted[shard] {
		return nil, errors.New("fake: installing")
	}
	data := fmt.Sprintf("%d\n", m.lastIdx[shard])
	for _, e := range m.applied[shard] {
		data += e + "\n"
	}
	return &fakeSnapshot{applied: m.lastIdx[shard], data: []byte(data)}, nil
}

func (m *fakeMachine) InstallSnapshot(shard int, next func() ([]byte, error), durable func(uint64) error) (uint64, error) {
	var all []byte
	for {
		c, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		all = append(all, c...)
	}
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	applied, err := strconv.ParseUint(lines[0], 10, 64)
	if err != nil {
		return 0, err
	}
	if err := durable(applied); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied[shard], m.lastIdx[shard] = lines[1:], applied
	if len(lines) == 1 {
		m.applied[shard] = nil
	}
	delete(m.interrupted, shard)
	m.installs++
	return applied, nil
}

func (m *fakeMachine) ResetShard(shard int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied[shard], m.lastIdx[shard] = nil, 0
	delete(m.interrupted, shard)
	m.resets++
	return nil
}

func (m *fakeMachine) MarkReplicated(shard int, index uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastIdx[shard] = index
	return nil
}

func (m *fakeMachine) InstallInterrupted(shard int) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.interrupted[shard], nil
}

// crashInstall leaves shard as a crash in an install does: reset, marked.
func (m *fakeMachine) crashInstall(shard int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied[shard], m.lastIdx[shard], m.interrupted[shard] = nil, 0, true
}

func (m *fakeMachine) installCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.installs
}

func (m *fakeMachine) replica(shard int) ShardReplica {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.attached[shard]
}

func (m *fakeMachine) entries(shard int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.applied[shard])
}

// TestShardGroups: three sites, three shards, replication factor 2. Until
// the allocation, every shard is refused as starting; then each shard runs
// a group on its two replicas, the third site refusing with their
// addresses; only the leader proposes, a follower names it; both replicas
// apply the same entries in the same order; a restarted replica resumes
// after its applied index and gets what was committed while it was away.
func TestShardGroups(t *testing.T) {
	const nShards = 3
	ids := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}
	sites := make([]*testSite, 3)
	machines := make([]*fakeMachine, 3)
	opts := func(i int, join string) Options {
		o := fastOptions(ids[i], join, 3)
		o.NShards, o.ReplicationFactor, o.Shards = nShards, 2, machines[i]
		return o
	}
	for i, id := range ids {
		sites[i] = &testSite{id: id, fs: vfs.NewMem()}
		machines[i] = newFakeMachine(nShards)
		defer sites[i].close(t)
	}
	sites[0].start(t, opts(0, ""), "127.0.0.1:0")
	if machines[0].starting != nShards {
		t.Fatalf("%d shards refused as starting before the allocation, want %d", machines[0].starting, nShards)
	}
	if err := machines[0].replica(0).Propose([]byte("x")); !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "not running here yet") {
		t.Fatalf("a write before the allocation: %v", err)
	}
	sites[1].start(t, opts(1, sites[0].addr), "127.0.0.1:0")
	// One join at a time: a second conf change while the first is pending
	// is refused and retried later.
	wait.For(t, 10*time.Second, "the second site follows", func() bool { return sites[1].c.Status().Leader != "" })
	sites[2].start(t, opts(2, sites[0].addr), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "the shards allocated", func() bool { return len(sites[2].c.State().GetMessages().GetShards()) == nShards })

	// leaderOf is the site whose group leads shard (-1: none yet).
	leaderOf := func(shard int) int {
		for i, s := range sites {
			if s.c == nil {
				continue
			}
			for _, st := range s.c.ShardStatuses() {
				if st.Shard == shard && st.IsLeader {
					return i
				}
			}
		}
		return -1
	}
	for shard := range nShards {
		reps := sites[0].c.State().GetMessages().GetShards()[shard].GetReplicas()
		if len(reps) != 2 {
			t.Fatalf("shard %d replicas %v, want 2", shard, reps)
		}
		var lead int
		wait.For(t, 10*time.Second, fmt.Sprintf("a leader of shard %d", shard), func() bool { lead = leaderOf(shard); return lead >= 0 })
		if !slices.Contains(reps, ids[lead]) {
			t.Fatalf("shard %d led by %s, not one of its replicas %v", shard, ids[lead], reps)
		}
		wait.For(t, 10*time.Second, "both replicas know the leader", func() bool {
			for _, s := range sites {
				for _, st := range s.c.ShardStatuses() {
					if st.Shard == shard && st.Leader != ids[lead] {
						return false
					}
				}
			}
			return true
		})
		for i := range sites {
			err := machines[i].replica(shard).Propose([]byte(fmt.Sprintf("s%d-from-%d", shard, i)))
			switch {
			case i == lead:
				if err != nil {
					t.Fatalf("the leader's proposal: %v", err)
				}
				// An entry a raft message between sites could not carry.
				if err := machines[i].replica(shard).Propose(make([]byte, 1<<20+1)); !errors.Is(err, ErrEntryTooLarge) {
					t.Fatalf("a proposal of 1 MiB + 1 byte: %v", err)
				}
			case slices.Contains(reps, ids[i]):
				if !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), sites[lead].addr) {
					t.Fatalf("a follower's proposal: %v, want the leader's address %s", err, sites[lead].addr)
				}
			default:
				if !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "holds no replica") {
					t.Fatalf("a proposal on a site without a replica: %v", err)
				}
			}
		}
		want := fmt.Sprintf(":s%d-from-%d", shard, lead)
		for i := range sites {
			if !slices.Contains(reps, ids[i]) {
				continue
			}
			wait.For(t, 10*time.Second, "the entry applied on both replicas", func() bool {
				e := machines[i].entries(shard)
				return len(e) == 1 && strings.HasSuffix(e[0], want)
			})
		}
	}

	// Restart a follower of shard 0 on its engine: it resumes after its
	// applied index (fakeMachine refuses an index applied again) and gets
	// the entries committed after it.
	lead := leaderOf(0)
	reps := sites[0].c.State().GetMessages().GetShards()[0].GetReplicas()
	f := slices.IndexFunc(ids, func(id string) bool { return id != ids[lead] && slices.Contains(reps, id) })
	addr := sites[f].addr
	sites[f].stop()
	sites[f].start(t, opts(f, ""), addr)
	wait.For(t, 10*time.Second, "a proposal after the restart accepted by the leader", func() bool {
		l := leaderOf(0)
		return l >= 0 && machines[l].replica(0).Propose([]byte("after-restart")) == nil
	})
	wait.For(t, 10*time.Second, "the restarted replica applies the new entry", func() bool {
		e := machines[f].entries(0)
		return len(e) >= 2 && strings.HasSuffix(e[len(e)-1], ":after-restart")
	})
	// The leader may apply the entry a moment after the follower does.
	if !wait.Until(10*time.Second, func() bool { return slices.Equal(machines[f].entries(0), machines[lead].entries(0)) }) {
		t.Fatalf("replicas applied different entries: %v and %v", machines[f].entries(0), machines[lead].entries(0))
	}
}

// TestShardGroupPartitioned: a shard's leader cut off from both other
// replicas commits nothing and stops serving reads: it steps down (its
// storage is told, which fails the proposals it had pending), the majority elects a leader whose
// entries apply on both, and after the heal the old leader applies the
// same entries, never the one it proposed alone.
func TestShardGroupPartitioned(t *testing.T) {
	sites, machines, _ := startOneShardSites(t)
	// leader is the site all running replicas name as the shard's leader
	// (-1: they do not agree yet).
	leader := func(among []int) int {
		lead := ""
		for _, i := range among {
			st := sites[i].c.ShardStatuses()
			if len(st) != 1 || st[0].Leader == "" || (lead != "" && st[0].Leader != lead) {
				return -1
			}
			lead = st[0].Leader
		}
		return slices.IndexFunc(sites, func(s *testSite) bool { return s.id == lead })
	}
	var old int
	wait.For(t, 10*time.Second, "a leader of the shard known to all", func() bool { old = leader([]int{0, 1, 2}); return old >= 0 })
	var majority []int
	for i := range sites {
		if i != old {
			majority = append(majority, i)
		}
	}
	wait.For(t, 10*time.Second, "the leader serves reads (a majority acknowledges it)", func() bool { return machines[old].replica(0).CanRead() == nil })
	partition(sites, map[string]bool{sites[old].id: true})
	cutOff := machines[old].replica(0).Propose([]byte("cut-off"))
	wait.For(t, 10*time.Second, "the cut-off leader stops serving reads", func() bool { return machines[old].replica(0).CanRead() != nil })
	wait.For(t, 10*time.Second, "the cut-off leader steps down and tells its storage", func() bool {
		machines[old].mu.Lock()
		lost := machines[old].lost
		machines[old].mu.Unlock()
		return lost > 0 && machines[old].replica(0).CanServe() != nil
	})
	var next int
	wait.For(t, 10*time.Second, "a new leader on the majority side, serving reads", func() bool {
		next = leader(majority)
		return next >= 0 && next != old && machines[next].replica(0).CanRead() == nil
	})
	wait.For(t, 10*time.Second, "an entry of the new leader applied on the majority", func() bool {
		_ = machines[next].replica(0).Propose([]byte("majority"))
		for _, i := range majority {
			if e := machines[i].entries(0); len(e) == 0 || !strings.HasSuffix(e[len(e)-1], ":majority") {
				return false
			}
		}
		return true
	})
	partition(sites, nil)
	wait.For(t, 10*time.Second, "healed: the old leader applies what the majority applied", func() bool {
		return slices.Equal(machines[old].entries(0), machines[majority[0]].entries(0))
	})
	for i := range sites {
		for _, e := range machines[i].entries(0) {
			if strings.HasSuffix(e, ":cut-off") {
				t.Fatalf("site %d applied the entry the cut-off leader proposed alone (its Propose: %v): %v", i, cutOff, machines[i].entries(0))
			}
		}
	}
}

// TestShardGroupTruncation: the shard group's log is truncated on every
// replica (a snapshot every 5 entries keeping 2, in fastOptions), also past
// what a replica that is down has: when it comes back it catches up by a
// snapshot (fetched from the leader) and then from the log; a replica
// restarted after a truncation resumes from it; and a replica whose
// snapshot install a crash interrupted (its shard reset) starts from an
// empty log and is sent a snapshot again.
func TestShardGroupTruncation(t *testing.T) {
	sites, machines, opts := startOneShardSites(t)
	leaderOf := func() int {
		for i, s := range sites {
			if s.c == nil {
				continue
			}
			if st := s.c.ShardStatuses(); len(st) == 1 && st[0].IsLeader {
				return i
			}
		}
		return -1
	}
	firstIndex := func(i int) uint64 {
		g := sites[i].c.shardGroup(ShardGroup(0))
		if g == nil || g.node.Load() == nil {
			return 0
		}
		n, _ := g.store.FirstIndex()
		return n
	}
	// propose has the leader propose n entries (once each: the leader is
	// stable here), each applied on it before the next.
	next := 0
	propose := func(n int) {
		t.Helper()
		for range n {
			next++
			data := []byte(fmt.Sprintf("e%d", next))
			var l int
			wait.For(t, 10*time.Second, "the leader takes a proposal", func() bool {
				l = leaderOf()
				return l >= 0 && machines[l].replica(0).Propose(data) == nil
			})
			wait.For(t, 10*time.Second, "the entry applied on the leader", func() bool {
				e := machines[l].entries(0)
				return len(e) > 0 && strings.HasSuffix(e[len(e)-1], ":"+string(data))
			})
		}
	}
	var lead int
	wait.For(t, 10*time.Second, "a leader", func() bool { lead = leaderOf(); return lead >= 0 })
	propose(5)
	f := (lead + 1) % 3
	addr := sites[f].addr
	wait.For(t, 10*time.Second, "the follower has the first entries", func() bool { return len(machines[f].entries(0)) == 5 })
	sites[f].stop()
	propose(30)
	// Messages raft sent f before its link was given up may still reach
	// it: once the leader stops replicating to f, it has at most the
	// leader's log of then.
	fid, _ := meta.NodeID(sites[f].id)
	var sentTo uint64
	wait.For(t, 10*time.Second, "the leader stops replicating to the replica that is down", func() bool {
		l := leaderOf()
		g := sites[l].c.shardGroup(ShardGroup(0))
		n := g.node.Load()
		if n == nil {
			return false
		}
		if n.Status().Progress[fid].State == tracker.StateReplicate {
			propose(1)
			return false
		}
		sentTo, _ = g.store.LastIndex()
		return true
	})
	wait.For(t, 10*time.Second, "the others truncate past what the replica that is down has", func() bool {
		for i := range sites {
			if i != f && firstIndex(i) <= sentTo+1 {
				propose(1)
				return false
			}
		}
		return true
	})
	sites[f].start(t, opts(f, ""), addr)
	wait.For(t, 10*time.Second, "the replica that was down catches up by a snapshot", func() bool {
		return slices.Equal(machines[f].entries(0), machines[leaderOf()].entries(0))
	})
	if n := machines[f].installCount(); n != 1 {
		t.Fatalf("%d snapshots installed, want 1", n)
	}
	propose(5)
	wait.For(t, 10*time.Second, "then from the log", func() bool {
		return slices.Equal(machines[f].entries(0), machines[leaderOf()].entries(0))
	})
	propose(30)
	wait.For(t, 10*time.Second, "every replica truncated its log", func() bool {
		for i := range sites {
			if firstIndex(i) < 20 {
				return false
			}
		}
		return true
	})
	// A restart after the truncation resumes from it.
	r := (leaderOf() + 2) % 3
	addr = sites[r].addr
	sites[r].stop()
	sites[r].start(t, opts(r, ""), addr)
	propose(5)
	same := func() bool {
		a := machines[0].entries(0)
		return len(a) == next && slices.Equal(a, machines[1].entries(0)) && slices.Equal(a, machines[2].entries(0))
	}
	wait.For(t, 10*time.Second, "the same entries on every replica", same)

	// A crash in an install: the shard reset and marked, the log emptied
	// at the restart, a snapshot sent again.
	r = (leaderOf() + 1) % 3
	addr = sites[r].addr
	sites[r].stop()
	machines[r].crashInstall(0)
	installs := machines[r].installCount()
	sites[r].start(t, opts(r, ""), addr)
	propose(5)
	wait.For(t, 10*time.Second, "the same entries on every replica after the interrupted install", same)
	if machines[r].installCount() != installs+1 {
		t.Fatalf("%d installs after the interrupted one, want 1", machines[r].installCount()-installs)
	}
}

// TestReadLease: the leader serves reads only while a quorum confirmed
// its leadership in its term within half an election timeout of when the
// confirmation was asked; a confirmation of another term, older than the
// lease, or answered once this site follows does not count, nor does an
// older one replace a newer.
func TestReadLease(t *testing.T) {
	c := &Cluster{opts: Options{ElectionTicks: 10, TickInterval: 10 * time.Millisecond}, self: 1}
	g := &shardGroup{c: c, shard: 3, acks: map[uint64]leaderAck{}}
	g.leader.Store(true)
	g.term.Store(5)
	unconfirmed := func() bool {
		var nl *NotLeaderError
		return errors.As(g.CanRead(), &nl) && nl.Unconfirmed == 50*time.Millisecond
	}
	rctx := func(term uint64, asked time.Time) []byte {
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, term), uint64(asked.UnixNano()))
	}
	if !unconfirmed() {
		t.Fatalf("no confirmation yet: %v", g.CanRead())
	}
	g.leaseConfirmed(rctx(4, time.Now())) // an earlier term's
	g.leaseConfirmed([]byte("short"))
	if !unconfirmed() {
		t.Fatalf("a confirmation of another term: %v", g.CanRead())
	}
	// Asked 60 ms ago, answered only now: the lease ran from the asking.
	g.leaseConfirmed(rctx(5, time.Now().Add(-60*time.Millisecond)))
	if !unconfirmed() {
		t.Fatalf("a confirmation asked longer ago than the lease counted: %v", g.CanRead())
	}
	now := time.Now()
	g.leaseConfirmed(rctx(5, now))
	if err := g.CanRead(); err != nil {
		t.Fatalf("confirmed: %v", err)
	}
	g.leaseConfirmed(rctx(5, now.Add(-10*time.Millisecond)))
	if !g.confirmed.asked.Equal(now) {
		t.Fatalf("an older confirmation replaced a newer: %v, want %v", g.confirmed.asked, now)
	}
	g.leader.Store(false)
	var nl *NotLeaderError
	if err := g.CanRead(); !errors.As(err, &nl) || nl.Unconfirmed != 0 {
		t.Fatalf("a follower: %v", err)
	}
	g.confirmed = leaseConfirmation{}
	g.leaseConfirmed(rctx(5, time.Now())) // answered as a follower
	g.leader.Store(true)
	if !unconfirmed() {
		t.Fatalf("a confirmation answered as a follower counted: %v", g.CanRead())
	}
}

// startOneShardSites starts three sites of one shard, joined one at a time
// (a second conf change while the first is pending is refused and retried
// later); they close at the end of the test. opts gives a site's options,
// for restarts.
func startOneShardSites(t *testing.T) ([]*testSite, []*fakeMachine, func(i int, join string) Options) {
	t.Helper()
	ids := []string{"00000000000000a1", "00000000000000b2", "00000000000000c3"}
	sites := make([]*testSite, 3)
	machines := make([]*fakeMachine, 3)
	opts := func(i int, join string) Options {
		o := fastOptions(ids[i], join, 3)
		o.NShards, o.Shards = 1, machines[i]
		return o
	}
	for i, id := range ids {
		sites[i] = &testSite{id: id, fs: vfs.NewMem()}
		machines[i] = newFakeMachine(1)
		t.Cleanup(func() { sites[i].close(t) })
	}
	sites[0].start(t, opts(0, ""), "127.0.0.1:0")
	sites[1].start(t, opts(1, sites[0].addr), "127.0.0.1:0")
	wait.For(t, 10*time.Second, "the second site follows", func() bool { return sites[1].c.Status().Leader != "" })
	sites[2].start(t, opts(2, sites[0].addr), "127.0.0.1:0")
	return sites, machines, opts
}
