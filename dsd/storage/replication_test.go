package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

var errFakeFollower = errors.New("fake: not the leader")

// fakeLog is a replicated shard's log without raft: Propose appends while
// the replica leads; pump applies the entries in order to every replica.
type fakeLog struct {
	mu      sync.Mutex
	entries [][]byte
	// appended is poked by every Propose.
	appended chan struct{}
}

func newFakeLog() *fakeLog { return &fakeLog{appended: make(chan struct{}, 1)} }

// replica is one DB's view of a fakeLog.
type replica struct {
	log    *fakeLog
	leader bool
}

func (r *replica) Propose(data []byte) error {
	if !r.leader {
		return errFakeFollower
	}
	r.log.mu.Lock()
	r.log.entries = append(r.log.entries, append([]byte(nil), data...))
	r.log.mu.Unlock()
	select {
	case r.log.appended <- struct{}{}:
	default:
	}
	return nil
}

func (r *replica) CanServe() error {
	if !r.leader {
		return errFakeFollower
	}
	return nil
}

func (r *replica) CanRead() error { return r.CanServe() }

func (l *fakeLog) take() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.entries
	l.entries = nil
	return out
}

// pump applies, until stop, the entries of l (shard's log) to every db in
// log order, on each Propose; it returns the last index applied.
func (l *fakeLog) pump(t *testing.T, shard int, dbs []*DB, stop <-chan struct{}) <-chan uint64 {
	return l.pumpAfter(t, shard, dbs, stop, 0)
}

// pumpAfter is pump with the first entry at index after+1.
func (l *fakeLog) pumpAfter(t *testing.T, shard int, dbs []*DB, stop <-chan struct{}, after uint64) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		index := after
		defer func() { out <- index }()
		for {
			select {
			case <-stop:
				return
			case <-l.appended:
			}
			for _, e := range l.take() {
				index++
				for _, db := range dbs {
					if err := db.ApplyReplicated(shard, index, e); err != nil {
						t.Errorf("apply: %v", err)
					}
				}
			}
		}
	}()
	return out
}

func openReplica(t *testing.T, nShards int, clock *fakeClock) *DB {
	t.Helper()
	db, err := Open(Options{NShards: nShards, DataDir: "data", FS: vfs.NewMem(), IdleTickInterval: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// shardKeys lists a shard's replicated keyspaces (clock, producers,
// applied index, generation data) as key=value lines.
func shardKeys(t *testing.T, db *DB, shard int) string {
	t.Helper()
	var buf bytes.Buffer
	for _, tag := range []byte{tagShardClock, tagProducer, tagApplied, tagGenData} {
		err := db.scan(shardPrefix(shard, tag), func(k, v []byte) error {
			fmt.Fprintf(&buf, "%x=%x\n", k, v)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// TestReplicatedShard: Stores on the leader are proposed as entries and
// answered once applied; the follower applying the same entries writes the
// same bytes; the follower refuses writes and reads; a leader change fails
// the proposals not yet applied.
func TestReplicatedShard(t *testing.T) {
	const nShards = 2
	leader := openReplica(t, nShards, newFakeClock(1_000_000))
	// The follower's clock is far off: timestamps come from the entries.
	follower := openReplica(t, nShards, newFakeClock(9_000_000_000))
	logs := make([]*fakeLog, nShards)
	stop := make(chan struct{})
	pumped := make([]<-chan uint64, nShards)
	for i := range logs {
		logs[i] = newFakeLog()
		if err := leader.SetReplicator(i, &replica{log: logs[i], leader: true}); err != nil {
			t.Fatal(err)
		}
		if err := follower.SetReplicator(i, &replica{log: logs[i]}); err != nil {
			t.Fatal(err)
		}
		pumped[i] = logs[i].pump(t, i, []*DB{leader, follower}, stop)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for c := 0; c < 5; c++ {
		cid := fmt.Sprintf("c%d", c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= 4; seq++ {
				p := &Producer{ClientID: cid, Epoch: 1, FirstSeq: seq}
				m := msg("t/"+cid, fmt.Sprint(seq))
				m.Retain = seq%2 == 0 // retained records are replicated too
				res, err := leader.Store(ctx, cid, []*storagev1.Message{m}, p)
				if err != nil || len(res.TimestampsUs) != 1 {
					t.Errorf("store %s/%d: %+v %v", cid, seq, res, err)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// A duplicate (same producer sequence) is a duplicate on the leader.
	res, err := leader.Store(ctx, "c0", []*storagev1.Message{msg("t/c0", "dup")}, &Producer{ClientID: "c0", Epoch: 1, FirstSeq: 1})
	if err != nil || !res.Duplicate {
		t.Fatalf("duplicate: %+v %v", res, err)
	}
	// An operator's delete is a command of the topic's shard.
	if deleted, err := leader.DeleteRetained(ctx, "t/c1"); err != nil || !deleted {
		t.Fatalf("delete retained: %v %v", deleted, err)
	}
	close(stop)
	for i := range logs {
		index := <-pumped[i]
		if index == 0 {
			continue
		}
		waitFor(t, "both replicas applied", func() bool {
			a, _ := leader.ReplicatedApplied(i)
			b, _ := follower.ReplicatedApplied(i)
			return a == index && b == index
		})
		if a, b := shardKeys(t, leader, i), shardKeys(t, follower, i); a != b || !strings.Contains(a, fmt.Sprintf("%04x10", i)) {
			t.Fatalf("shard %d differs:\nleader:\n%s\nfollower:\n%s", i, a, b)
		}
	}
	if got := len(readAll(t, leader, "#", 0)); got != 20 {
		t.Fatalf("leader reads %d messages, want 20", got)
	}
	if got, _, _ := leader.MatchRetained(ctx, "#", "", 100); len(got) != 4 || payloadOf(getRetained(t, leader, "t/c0")) != "4" {
		t.Fatalf("leader's retained messages: %v", got)
	}
	if _, _, err := follower.GetRetained("t/c0"); !errors.Is(err, errFakeFollower) {
		t.Fatalf("retained read on the follower: %v", err)
	}
	if _, err := follower.Store(ctx, "c0", []*storagev1.Message{msg("t", "x")}, nil); !errors.Is(err, errFakeFollower) {
		t.Fatalf("store on the follower: %v", err)
	}
	if _, err := follower.GetStreams("#", 0, -1); !errors.Is(err, errFakeFollower) {
		t.Fatalf("read on the follower: %v", err)
	}
	// A Store whose entry is never applied fails when the leader is lost.
	shard := leader.ShardOf("c1")
	done := make(chan error, 1)
	go func() {
		_, err := leader.Store(ctx, "c1", []*storagev1.Message{msg("t", "lost")}, nil)
		done <- err
	}()
	waitFor(t, "the proposal", func() bool { return leader.shards[shard].proposals() == 1 })
	if err := leader.SetReplicator(shard, &replica{log: logs[shard]}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errFakeFollower) {
		t.Fatalf("store across a leader change: %v", err)
	}
}

// TestReplicatedRestart: an applied entry's batch is committed without an
// fsync of its own (the raft log it came from is synced), and the applied
// index survives a reopen with the writes of its entry.
func TestReplicatedRestart(t *testing.T) {
	fs := &walSyncFS{FS: vfs.Default}
	opts := Options{NShards: 1, DataDir: t.TempDir(), IdleTickInterval: time.Hour, FS: fs}
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	data, err := appendEntry(nil, 7, 1, cmdBatch{nowUs: 5_000_000, stores: []*storeReq{{clientID: "c", msgs: []IngestMessage{ingest(t, msg("a/b", "x"))}}}})
	if err != nil {
		t.Fatal(err)
	}
	// The WAL's syncs are counted as they are made (walSyncFS): the
	// engine's metric is recorded after each fsync returns, so a sync of
	// Open's could be counted late, as if the apply had made it.
	syncs := fs.syncs.Load()
	if err := db.ApplyReplicated(0, 42, data); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "applied", func() bool { n, _ := db.ReplicatedApplied(0); return n == 42 })
	if n := fs.syncs.Load(); n != syncs {
		t.Fatalf("applying an entry fsynced the WAL %d times", n-syncs)
	}
	// SyncReplicatedApplied makes it durable: the raft log may be
	// truncated up to the index it returns.
	if n, err := db.SyncReplicatedApplied(0); n != 42 || err != nil {
		t.Fatalf("sync applied: %d %v", n, err)
	}
	if fs.syncs.Load() == syncs {
		t.Fatal("SyncReplicatedApplied did not sync the WAL")
	}
	fsyncs := db.EngineMetrics().WALFsyncs
	// A local shard's Store does fsync (the metric counts).
	if _, err := db.Store(context.Background(), "c", []*storagev1.Message{msg("a/c", "y")}, nil); err != nil {
		t.Fatal(err)
	}
	// (The metric is a latency histogram's count, recorded just after
	// the fsync returns: it may lag the Store's answer a little.)
	waitFor(t, "a local Store's fsync counted", func() bool { return db.EngineMetrics().WALFsyncs > fsyncs })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.ReplicatedApplied(0); n != 42 || err != nil {
		t.Fatalf("applied after reopen: %d %v", n, err)
	}
	got := readAll(t, db, "a/b", 0)
	if len(got) != 1 || got[0].TimestampUs != 5_000_000 || string(got[0].Payload) != "x" {
		t.Fatalf("read after reopen: %v", got)
	}
	if err := db.ApplyReplicated(0, 43, []byte{1, 2, 3}); !errors.Is(err, ErrCorruption) {
		t.Fatalf("malformed entry: %v", err)
	}
}

func ingest(t testing.TB, m *storagev1.Message) IngestMessage {
	t.Helper()
	in, err := ingestMessagesOf([]*storagev1.Message{m})
	if err != nil {
		t.Fatal(err)
	}
	return in[0]
}

// TestReplicatedSessions: session commands on the leader are entries too:
// a session opened, changed, ended and its will fired on the leader is
// the same, byte for byte, on the follower that applied the same entries;
// the follower refuses them.
func TestReplicatedSessions(t *testing.T) {
	clock := newFakeClock(1_000_000)
	leader := openReplica(t, 1, clock)
	// A clock a little off (readers judge expiry by their own clock).
	follower := openReplica(t, 1, newFakeClock(1_700_000))
	log := newFakeLog()
	if err := leader.SetReplicator(0, &replica{log: log, leader: true}); err != nil {
		t.Fatal(err)
	}
	if err := follower.SetReplicator(0, &replica{log: log}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	pumped := log.pump(t, 0, []*DB{leader, follower}, stop)
	ctx := context.Background()
	will := &storagev1.Will{Message: &storagev1.Message{Topic: "wills/c1", Payload: []byte("gone"), Qos: 1}}
	open, err := leader.OpenSession(ctx, OpenSessionRequest{ClientID: "c1", ProtocolVersion: 5, ExpiryIntervalS: 3600, Will: will, GatewayID: "gw", GatewayEpoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.CommitSession(ctx, subCommit("c1", open.Guard, 1, 2, "a/#")); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Store(ctx, "c1", []*storagev1.Message{msg("a/b", "x")}, &Producer{ClientID: "c1", Epoch: open.Guard, FirstSeq: 1}); err != nil {
		t.Fatal(err)
	}
	if ended, err := leader.Disconnect(ctx, DisconnectRequest{ClientID: "c1", Guard: open.Guard, Abnormal: true}); err != nil || ended {
		t.Fatalf("disconnect: %v %v", ended, err)
	}
	if _, err := leader.OpenSession(ctx, OpenSessionRequest{ClientID: "c2", ProtocolVersion: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.DeleteSession(ctx, "c2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := follower.OpenSession(ctx, OpenSessionRequest{ClientID: "c3", ProtocolVersion: 5}); !errors.Is(err, errFakeFollower) {
		t.Fatalf("open session on the follower: %v", err)
	}
	close(stop)
	index := <-pumped
	waitFor(t, "both replicas applied", func() bool {
		a, _ := leader.ReplicatedApplied(0)
		b, _ := follower.ReplicatedApplied(0)
		return a == index && b == index
	})
	for _, tag := range []byte{tagSession, tagSessionGuard, tagWillRetained, tagProducer} {
		dump := func(db *DB) string {
			var buf bytes.Buffer
			_ = db.scan(shardPrefix(0, tag), func(k, v []byte) error { fmt.Fprintf(&buf, "%x=%x\n", k, v); return nil })
			return buf.String()
		}
		if a, b := dump(leader), dump(follower); a != b || (tag == tagSession && a == "") {
			t.Fatalf("keyspace %02x differs or is empty:\nleader:\n%s\nfollower:\n%s", tag, a, b)
		}
	}
	if a, b := shardKeys(t, leader, 0), shardKeys(t, follower, 0); a != b {
		t.Fatalf("messages differ:\nleader:\n%s\nfollower:\n%s", a, b)
	}
	var topics []string
	for _, m := range readAll(t, leader, "#", 0) {
		topics = append(topics, m.Topic)
	}
	slices.Sort(topics)
	if !slices.Equal(topics, []string{"a/b", "wills/c1"}) {
		t.Fatalf("the leader has %v, want the message and the fired will", topics)
	}
	s, _, ok := follower.GetSession("c1")
	if !ok || s.Record.GetConnected() || len(s.Subscriptions) != 1 {
		t.Fatalf("the follower's session: %v %+v", ok, s)
	}
	if _, _, ok := follower.GetSession("c2"); ok {
		t.Fatal("the deleted session is on the follower")
	}
}

// TestEntryCodec: every command the writer builds encodes, decodes to the
// same command and encodes to the same bytes; a truncated or corrupted
// entry is an error, never a panic.
func TestEntryCodec(t *testing.T) {
	cmds := codecCommands(t)
	kinds := map[byte]bool{}
	for _, c := range cmds {
		b, err := appendEntry(nil, 0xabc, 42, c)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		kinds[b[entryHeaderLen]] = true
		origin, id, got, err := decodeEntry(b)
		if err != nil || origin != 0xabc || id != 42 {
			t.Fatalf("%T: decode: %v %x %d", c, err, origin, id)
		}
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", c) {
			t.Fatalf("decoded %T, want %T", got, c)
		}
		again, err := appendEntry(nil, 0xabc, 42, got)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%T: re-encoding differs (%v)\n%x\n%x", c, err, b, again)
		}
		for n := range len(b) {
			if _, _, _, err := decodeEntry(b[:n]); err == nil {
				t.Fatalf("%T: a prefix of %d of %d bytes decodes", c, n, len(b))
			}
		}
		for i := range b {
			mangled := bytes.Clone(b)
			mangled[i] ^= 0xff
			_, _, _, _ = decodeEntry(mangled) // must not panic
		}
	}
	for k := byte(1); k < entryKindEnd; k++ {
		if !kinds[k] {
			t.Errorf("entry kind %d not covered by codecCommands", k)
		}
	}
	if len(kinds) != int(entryKindEnd-1) {
		t.Fatalf("%d kinds covered, want exactly the %d kinds 1 to %d", len(kinds), entryKindEnd-1, entryKindEnd-1)
	}
}

// FuzzDecodeEntry: a log entry from another site never panics the
// decoder, and one that decodes encodes again to bytes that decode to the
// same encoding (the codec is stable).
func FuzzDecodeEntry(f *testing.F) {
	for _, c := range codecCommands(f) {
		b, err := appendEntry(nil, 1, 2, c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		origin, id, cmd, err := decodeEntry(b)
		if err != nil {
			return
		}
		again, err := appendEntry(nil, origin, id, cmd)
		if err != nil {
			t.Fatalf("a decoded %T does not encode: %v", cmd, err)
		}
		o2, id2, cmd2, err := decodeEntry(again)
		if err != nil || o2 != origin || id2 != id {
			t.Fatalf("the re-encoding does not decode: %v", err)
		}
		third, err := appendEntry(nil, o2, id2, cmd2)
		if err != nil || !bytes.Equal(third, again) {
			t.Fatalf("the codec is not stable: %x then %x (%v)", again, third, err)
		}
	})
}

// codecCommands has one command of every entry kind (two of some).
func codecCommands(t testing.TB) []command {
	exp := uint32(30)
	guard := uint64(9)
	return []command{
		cmdBatch{nowUs: 5, stores: []*storeReq{
			{clientID: "a", msgs: []IngestMessage{ingest(t, msg("x/y", "1")), ingest(t, msg("x/z", "2"))}},
			{clientID: "b", producer: &Producer{ClientID: "b", Epoch: 3, FirstSeq: 7, QoS2PacketIDs: []uint16{0, 65535}}, msgs: []IngestMessage{ingest(t, msg("q", ""))}},
		}},
		cmdTick{nowUs: 1 << 40},
		cmdAddGeneration{nowUs: 7, layout: LayoutConfig{Type: "wildcard_optimized_v2", BitsPerTopicLevel: 64, TopicIndexBytes: 4, WildcardThresholds: []int{100, 20}, MaxTrieStates: 100000}},
		cmdDropGeneration{nowUs: 8, id: 3},
		cmdSessionGC{nowUs: -1},
		cmdFireWills{nowUs: 9},
		cmdOpenSession{nowUs: 10, req: OpenSessionRequest{ClientID: "c", Username: "u", ProtocolVersion: 5, CleanStart: true, ExpiryIntervalS: math.MaxUint32,
			Will: &storagev1.Will{Message: &storagev1.Message{Topic: "w", Payload: []byte("p")}, DelayIntervalS: 4}, GatewayID: "gw", GatewayEpoch: 2, AllowCrossIdentityTakeover: true}},
		cmdOpenSession{nowUs: 11, req: OpenSessionRequest{ClientID: "d"}},
		cmdCommitSession{nowUs: 12, commit: subCommit("c", 4, 1, 2, "a/#")},
		cmdDisconnect{nowUs: 13, req: DisconnectRequest{ClientID: "c", Guard: 4, Abnormal: true, ExpiryIntervalS: &exp, watermarkUs: 77}},
		cmdDisconnect{nowUs: 14, req: DisconnectRequest{ClientID: "c", Guard: 4}},
		cmdDeleteSession{nowUs: 15, clientID: "c", guard: &guard},
		cmdDeleteSession{nowUs: 16, clientID: "c"},
		cmdRelease{nowUs: 17, clientID: "c", guard: 4, packetID: 65535},
		cmdEndGatewayEpoch{nowUs: 18, gatewayID: "gw", epoch: 2, watermarkUs: 99},
		cmdWillRetainedDone{nowUs: 19, ts: []int64{1, 2, 3}},
		cmdRetainedDelete{nowUs: 20, topic: "r/t", aboveUs: 1 << 50},
		cmdRetainedExpire{nowUs: 21},
		cmdSharedGrant{filter: "$share/g/t", grant: &storagev1.SharedGrant{Id: 5, Member: "m"}},
		cmdSharedAck{filter: "$share/g/t", member: "m", id: 5},
		cmdSharedMemberDown{down: SharedDown{Member: "m", Guard: 4, Final: true, Resumed: true, KeepQoS2: true,
			Stream: &Stream{Shard: 3, Generation: 2, StaticIndex: []byte{1, 2}, Structure: "t/+"}, Held: []uint64{1}, Filters: []string{"f"},
			Recorded: []uint64{2, 3}, Groups: []string{"g1", "g2"}, Done: []uint64{4}}},
		cmdSharedMemberDown{down: SharedDown{Member: "n"}},
		cmdSharedForget{filter: "$share/g/t"},
		cmdSharedStreamGone{filter: "$share/g/t", stream: Stream{Shard: 1, Generation: 4, StaticIndex: []byte{9}, Structure: "t/+"}},
	}
}

// TestReplicatedCloseAnswersProposals: a Store whose entry was proposed
// but never applied is answered ErrClosed when the storage closes (the
// ingest path's callback included).
func TestReplicatedCloseAnswersProposals(t *testing.T) {
	db, err := Open(Options{NShards: 1, DataDir: "data", FS: vfs.NewMem(), IdleTickInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	log := newFakeLog()
	if err := db.SetReplicator(0, &replica{log: log, leader: true}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	db.StoreAsync("c", []IngestMessage{ingest(t, msg("a/b", "x"))}, nil, func(_ StoreResult, err error) { done <- err })
	waitFor(t, "the proposal", func() bool { return db.shards[0].proposals() == 1 })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("a proposed Store at Close: %v", err)
	}
}

// walSyncFS counts the syncs of write-ahead log files (*.log) as they are
// made.
type walSyncFS struct {
	vfs.FS
	syncs atomic.Int64
}

func (f *walSyncFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return file, err
	}
	return &walSyncFile{File: file, syncs: &f.syncs}, nil
}

func (f *walSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.Create(name, c)
	return f.wrap(name, file, err)
}

func (f *walSyncFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	file, err := f.FS.OpenReadWrite(name, c, opts...)
	return f.wrap(name, file, err)
}

func (f *walSyncFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.ReuseForWrite(oldname, newname, c)
	return f.wrap(newname, file, err)
}

type walSyncFile struct {
	vfs.File
	syncs *atomic.Int64
}

func (w *walSyncFile) Sync() error {
	w.syncs.Add(1)
	return w.File.Sync()
}

func (w *walSyncFile) SyncData() error {
	w.syncs.Add(1)
	return w.File.SyncData()
}

func (w *walSyncFile) SyncTo(length int64) (bool, error) {
	w.syncs.Add(1)
	return w.File.SyncTo(length)
}

// TestCheckSessionGuardLaggingFollower: a follower that has not applied a
// session's open yet takes the leader's newer guard as current (an entry
// the gateway ties to it reaches this site before the open does), while a
// guard its view knows was superseded is stale; a site alone knows every
// guard, so a guard it never handed out is stale there.
func TestCheckSessionGuardLaggingFollower(t *testing.T) {
	clock := newFakeClock(1_000_000)
	leader := openReplica(t, 1, clock)
	follower := openReplica(t, 1, clock)
	log := newFakeLog()
	if err := leader.SetReplicator(0, &replica{log: log, leader: true}); err != nil {
		t.Fatal(err)
	}
	if err := follower.SetReplicator(0, &replica{log: log}); err != nil {
		t.Fatal(err)
	}
	// The leader applies at once; the follower later (entries kept).
	var (
		mu   sync.Mutex
		kept [][]byte
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-log.appended:
			}
			for _, e := range log.take() {
				mu.Lock()
				kept = append(kept, e)
				index := uint64(len(kept))
				mu.Unlock()
				if err := leader.ApplyReplicated(0, index, e); err != nil {
					t.Errorf("apply: %v", err)
				}
			}
		}
	}()
	ctx := context.Background()
	open := func() uint64 {
		t.Helper()
		r, err := leader.OpenSession(ctx, OpenSessionRequest{ClientID: "c1", ProtocolVersion: 5, ExpiryIntervalS: 60, GatewayID: "gw", GatewayEpoch: 1})
		if err != nil {
			t.Fatal(err)
		}
		return r.Guard
	}
	g1 := open()
	if err := follower.CheckSessionGuard("c1", g1); err != nil {
		t.Fatalf("the follower, before it applied the open: %v", err)
	}
	g2 := open() // a takeover
	close(stop)
	<-done
	for i, e := range kept {
		if err := follower.ApplyReplicated(0, uint64(i+1), e); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		guard uint64
		want  error
	}{{g1, ErrStaleGuard}, {g2, nil}, {g2 + 1, nil}} {
		if err := follower.CheckSessionGuard("c1", c.guard); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Fatalf("the follower, guard %d (open %d then %d): %v, want %v", c.guard, g1, g2, err, c.want)
		}
	}
	alone := openReplica(t, 1, clock)
	r, err := alone.OpenSession(ctx, OpenSessionRequest{ClientID: "c1", ProtocolVersion: 5, ExpiryIntervalS: 60, GatewayID: "gw", GatewayEpoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.CheckSessionGuard("c1", r.Guard+1); !errors.Is(err, ErrStaleGuard) {
		t.Fatalf("a site alone, a guard it never handed out: %v", err)
	}
	if err := alone.CheckSessionGuard("c2", 1); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("a site alone, no such session: %v", err)
	}
}
