package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// sessEnv is a DB on a memory FS with a fake clock, reopenable.
type sessEnv struct {
	t     testing.TB
	clock *fakeClock
	opts  Options
	db    *DB
	// revoked collects GuardRevoked events.
	mu      sync.Mutex
	revoked []GuardRevoked
}

func newSessEnv(t testing.TB, nShards int) *sessEnv {
	e := &sessEnv{t: t, clock: newFakeClock(t0)}
	e.opts = Options{DataDir: "data", FS: vfs.NewMem(), NShards: nShards, IdleTickInterval: time.Hour, Now: e.clock.Now}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *sessEnv) open() {
	e.t.Helper()
	e.db = must(Open(e.opts))
	e.db.OnGuardRevoked(func(g GuardRevoked) {
		e.mu.Lock()
		e.revoked = append(e.revoked, g)
		e.mu.Unlock()
	})
}

func (e *sessEnv) close() {
	if e.db != nil {
		if err := e.db.Close(); err != nil {
			e.t.Fatal(err)
		}
		e.db = nil
	}
}

func (e *sessEnv) reopen() { e.close(); e.open() }

func (e *sessEnv) takeRevoked() []GuardRevoked {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.revoked
	e.revoked = nil
	return out
}

func (e *sessEnv) openSess(cid, user string, clean bool, expiry uint32, gw string) OpenSessionResult {
	e.t.Helper()
	res, err := e.db.OpenSession(context.Background(), OpenSessionRequest{ClientID: cid, Username: user, ProtocolVersion: 5,
		CleanStart: clean, ExpiryIntervalS: expiry, GatewayID: gw, GatewayEpoch: 1})
	if err != nil {
		e.t.Fatalf("open %s: %v", cid, err)
	}
	return res
}

func u64(v uint64) *uint64 { return &v }
func u32(v uint32) *uint32 { return &v }

func subCommit(cid string, guard, subID, stateID uint64, filter string) *storagev1.SessionCommit {
	return &storagev1.SessionCommit{ClientId: cid, Guard: guard,
		PutStates:        []*storagev1.SubscriptionState{{Id: stateID, SubscriptionId: subID, TopicFilter: filter, Qos: 1}},
		PutSubscriptions: []*storagev1.Subscription{{Id: subID, TopicFilter: filter, CurrentState: stateID, StartUs: []int64{1, 2}}},
	}
}

func TestSessionGuardFencing(t *testing.T) {
	e := newSessEnv(t, 4)
	ctx := context.Background()
	a := e.openSess("c1", "u", false, 3600, "gwA")
	if a.SessionPresent || a.Guard == 0 || a.TakenOver {
		t.Fatalf("first open: %+v", a)
	}
	if err := e.db.CommitSession(ctx, subCommit("c1", a.Guard, 1, 2, "a/#")); err != nil {
		t.Fatal(err)
	}
	// Takeover by gateway B: A's guard is revoked, A's commit and
	// Disconnect are refused, the session stays connected to B.
	b := e.openSess("c1", "u", false, 3600, "gwB")
	if !b.SessionPresent || !b.TakenOver || b.Guard <= a.Guard || len(b.Session.Subscriptions) != 1 {
		t.Fatalf("takeover: %+v", b)
	}
	rev := e.takeRevoked()
	if len(rev) != 1 || rev[0] != (GuardRevoked{ClientID: "c1", Guard: a.Guard, GatewayID: "gwA", GatewayEpoch: 1, Connected: true, Reason: RevokedTakeover}) {
		t.Fatalf("revoked: %+v", rev)
	}
	if err := e.db.CommitSession(ctx, subCommit("c1", a.Guard, 3, 4, "b")); !errors.Is(err, ErrStaleGuard) {
		t.Fatalf("commit with the old guard: %v", err)
	}
	if _, err := e.db.Disconnect(ctx, DisconnectRequest{ClientID: "c1", Guard: a.Guard}); !errors.Is(err, ErrStaleGuard) {
		t.Fatalf("old owner's disconnect: %v", err)
	}
	if s, _, _ := e.db.GetSession("c1"); !s.Record.Connected || s.Record.OwnerGatewayId != "gwB" {
		t.Fatalf("after the old owner's disconnect: %+v", s.Record)
	}
	// Store under the old guard: stale epoch; under the new one: stored.
	if _, err := e.db.Store(ctx, "c1", []*storagev1.Message{msg("t", "x")}, &Producer{ClientID: "c1", Epoch: a.Guard, FirstSeq: 1}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("store under the old guard: %v", err)
	}
	if _, err := e.db.Store(ctx, "c1", []*storagev1.Message{msg("t", "x")}, &Producer{ClientID: "c1", Epoch: b.Guard, FirstSeq: 1}); err != nil {
		t.Fatal(err)
	}
	// Delete (with B's guard) and recreate: B's guard is refused
	// everywhere, including delete ("not mine").
	if del, err := e.db.DeleteSession(ctx, "c1", u64(a.Guard)); !errors.Is(err, ErrStaleGuard) || del {
		t.Fatalf("delete with a stale guard: %v %v", del, err)
	}
	if del, err := e.db.DeleteSession(ctx, "c1", u64(b.Guard)); err != nil || !del {
		t.Fatalf("delete: %v %v", del, err)
	}
	if _, err := e.db.Store(ctx, "c1", []*storagev1.Message{msg("t", "y")}, &Producer{ClientID: "c1", Epoch: b.Guard, FirstSeq: 2}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("store after delete: %v", err)
	}
	c := e.openSess("c1", "u", false, 3600, "gwC")
	if c.SessionPresent || c.Guard <= b.Guard {
		t.Fatalf("recreate: %+v", c)
	}
	if err := e.db.CommitSession(ctx, subCommit("c1", b.Guard, 3, 4, "b")); !errors.Is(err, ErrStaleGuard) {
		t.Fatalf("commit with the guard of a deleted incarnation: %v", err)
	}
	if del, err := e.db.DeleteSession(ctx, "c1", u64(b.Guard)); !errors.Is(err, ErrStaleGuard) || del {
		t.Fatalf("delete with the guard of a deleted incarnation: %v %v", del, err)
	}
	// Guards survive deletion and restart: the counter is persisted.
	if del, err := e.db.DeleteSession(ctx, "c1", nil); err != nil || !del {
		t.Fatalf("admin delete: %v %v", del, err)
	}
	e.reopen()
	d := e.openSess("c1", "u", false, 3600, "gwD")
	if d.Guard <= c.Guard {
		t.Fatalf("guard after delete and restart: %d <= %d", d.Guard, c.Guard)
	}
	if del, err := e.db.DeleteSession(ctx, "nobody", nil); err != nil || del {
		t.Fatalf("delete of an absent session: %v %v", del, err)
	}
}

func TestSessionConcurrentOpens(t *testing.T) {
	e := newSessEnv(t, 2)
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		cid := fmt.Sprintf("race%d", round)
		const n = 8
		guards := make([]uint64, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.db.OpenSession(ctx, OpenSessionRequest{ClientID: cid, ExpiryIntervalS: 60, GatewayID: fmt.Sprintf("gw%d", i), GatewayEpoch: 1})
				if err != nil {
					t.Error(err)
				}
				guards[i] = res.Guard
			}()
		}
		wg.Wait()
		// Exactly one opener owns the session: its commits and Stores
		// succeed, every other guard is refused.
		owners := 0
		for i, g := range guards {
			err := e.db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: cid, Guard: g, MissedMessages: u64(uint64(i))})
			switch {
			case err == nil:
				owners++
				s, _, _ := e.db.GetSession(cid)
				if s.Record.OwnerGatewayId != fmt.Sprintf("gw%d", i) || s.Record.Guard != g {
					t.Fatalf("owner %d but record %+v", i, s.Record)
				}
			case !errors.Is(err, ErrStaleGuard):
				t.Fatal(err)
			}
		}
		if owners != 1 {
			t.Fatalf("round %d: %d owners (guards %v)", round, owners, guards)
		}
		if got := len(e.takeRevoked()); got != n-1 {
			t.Fatalf("round %d: %d revoked guards, want %d", round, got, n-1)
		}
	}
}

// TestSessionFencingUnderLoad runs gateways that take a session over from
// each other while committing and storing; every success must come from
// the owner of the moment, so the stored sequence per guard has no gaps
// and every refused call is a stale guard or epoch.
func TestSessionFencingUnderLoad(t *testing.T) {
	e := newSessEnv(t, 2)
	ctx := context.Background()
	var wg sync.WaitGroup
	for gw := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				o, err := e.db.OpenSession(ctx, OpenSessionRequest{ClientID: "hot", ExpiryIntervalS: 60, GatewayID: fmt.Sprintf("gw%d", gw), GatewayEpoch: 1})
				if err != nil {
					t.Error(err)
					return
				}
				for seq := uint64(1); seq <= 3; seq++ {
					_, err := e.db.Store(ctx, "hot", []*storagev1.Message{msg("t", "p")}, &Producer{ClientID: "hot", Epoch: o.Guard, FirstSeq: seq})
					if err != nil && !errors.Is(err, ErrStaleEpoch) {
						t.Error(err)
					}
					err = e.db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "hot", Guard: o.Guard, LastId: u64(seq)})
					if err != nil && !errors.Is(err, ErrStaleGuard) {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	s, _, _ := e.db.GetSession("hot")
	g, ok := e.db.SessionGuard("hot")
	if !ok || g != s.Record.Guard {
		t.Fatalf("guard %d %v, record %+v", g, ok, s.Record)
	}
}

func TestSessionCrossIdentityTakeover(t *testing.T) {
	e := newSessEnv(t, 1)
	ctx := context.Background()
	a := e.openSess("c", "alice", false, 60, "gw")
	_, err := e.db.OpenSession(ctx, OpenSessionRequest{ClientID: "c", Username: "mallory", ExpiryIntervalS: 60})
	if !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("takeover by another user: %v", err)
	}
	// Also with clean start, and the session is untouched.
	_, err = e.db.OpenSession(ctx, OpenSessionRequest{ClientID: "c", Username: "mallory", CleanStart: true})
	if !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("clean takeover by another user: %v", err)
	}
	if g, _ := e.db.SessionGuard("c"); g != a.Guard {
		t.Fatalf("guard changed by a refused open: %d", g)
	}
	b, err := e.db.OpenSession(ctx, OpenSessionRequest{ClientID: "c", Username: "mallory", ExpiryIntervalS: 60, AllowCrossIdentityTakeover: true})
	if err != nil || !b.SessionPresent || !b.TakenOver || b.Session.Record.Username != "mallory" {
		t.Fatalf("allowed takeover: %+v %v", b, err)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newSessEnv(t, 2)
	ctx := context.Background()
	a := e.openSess("c", "", false, 5, "gw")
	if _, err := e.db.Disconnect(ctx, DisconnectRequest{ClientID: "c", Guard: a.Guard}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	b := e.openSess("c", "", false, 5, "gw")
	if !b.SessionPresent {
		t.Fatal("expiry 5 s: absent after 2 s")
	}
	if _, err := e.db.Disconnect(ctx, DisconnectRequest{ClientID: "c", Guard: b.Guard, Abnormal: true}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(4999 * time.Millisecond)
	if _, _, ok := e.db.GetSession("c"); !ok {
		t.Fatal("absent 4.999 s after the disconnect")
	}
	e.clock.Advance(time.Millisecond)
	if _, _, ok := e.db.GetSession("c"); ok {
		t.Fatal("present 5 s after the disconnect")
	}
	e.clock.Advance(time.Second)
	c := e.openSess("c", "", false, 5, "gw")
	if c.SessionPresent {
		t.Fatal("expiry 5 s: present 6 s after the disconnect")
	}
	if rev := e.takeRevoked(); len(rev) != 2 || rev[0].Reason != RevokedResumed || rev[1].Reason != RevokedExpired {
		t.Fatalf("revoked: %+v", rev)
	}

	// An expiry changed in DISCONNECT is honoured.
	if _, err := e.db.Disconnect(ctx, DisconnectRequest{ClientID: "c", Guard: c.Guard, ExpiryIntervalS: u32(60)}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(59 * time.Second)
	if _, _, ok := e.db.GetSession("c"); !ok {
		t.Fatal("expiry raised to 60 s in DISCONNECT: absent after 59 s")
	}
	e.clock.Advance(time.Second)
	if n, err := e.db.SweepSessions(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	// Expiry 0 in CONNECT: DISCONNECT may not raise it; the session ends
	// at the disconnect.
	d := e.openSess("z", "", false, 0, "gw")
	if _, err := e.db.Disconnect(ctx, DisconnectRequest{ClientID: "z", Guard: d.Guard, ExpiryIntervalS: u32(10)}); !errors.Is(err, ErrSessionExpiryChange) || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("raising a zero expiry: %v", err)
	}
	if ended, err := e.db.Disconnect(ctx, DisconnectRequest{ClientID: "z", Guard: d.Guard}); err != nil || !ended {
		t.Fatalf("expiry-0 disconnect: %v %v", ended, err)
	}
	if _, _, ok := e.db.GetSession("z"); ok {
		t.Fatal("expiry-0 session survived its disconnect")
	}
	// Lowering to 0 in DISCONNECT ends it too.
	f := e.openSess("y", "", false, 30, "gw")
	if ended, err := e.db.Disconnect(ctx, DisconnectRequest{ClientID: "y", Guard: f.Guard, ExpiryIntervalS: u32(0)}); err != nil || !ended {
		t.Fatalf("disconnect with expiry 0: %v %v", ended, err)
	}
}

func TestSessionGCTicker(t *testing.T) {
	e := &sessEnv{t: t, clock: newFakeClock(t0)}
	e.opts = Options{DataDir: "data", FS: vfs.NewMem(), NShards: 2, IdleTickInterval: time.Hour, Now: e.clock.Now, SessionGCInterval: 5 * time.Millisecond}
	e.open()
	t.Cleanup(e.close)
	a := e.openSess("c", "", false, 1, "gw")
	if _, err := e.db.Disconnect(context.Background(), DisconnectRequest{ClientID: "c", Guard: a.Guard}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	waitFor(t, "the sweep", func() bool { _, ok := e.db.SessionGuard("c"); return !ok })
	e.reopen()
	if _, ok := e.db.SessionGuard("c"); ok {
		t.Fatal("swept session back after reopen")
	}
}

func TestSessionQoS2Held(t *testing.T) {
	e := newSessEnv(t, 2)
	ctx := context.Background()
	a := e.openSess("c", "", false, 60, "gw")
	q2 := func(payload string) *storagev1.Message {
		m := msg("q/2", payload)
		m.Qos = 2
		return m
	}
	p := func(seq uint64, ids ...uint16) *Producer {
		return &Producer{ClientID: "c", Epoch: a.Guard, FirstSeq: seq, QoS2PacketIDs: ids}
	}
	r := must(e.db.Store(ctx, "c", []*storagev1.Message{q2("first")}, p(1, 7)))
	if r.Duplicate || r.TimestampsUs[0] == 0 {
		t.Fatalf("first: %+v", r)
	}
	// The client resends packet 7 (DUP): the gateway stores it with the
	// next sequence number, and dsd answers duplicate.
	if r := must(e.db.Store(ctx, "c", []*storagev1.Message{q2("resend")}, p(2, 7))); !r.Duplicate {
		t.Fatalf("resend of a held id: %+v", r)
	}
	// A mixed Store: the held id is skipped, the other stored.
	r = must(e.db.Store(ctx, "c", []*storagev1.Message{q2("again"), q2("other")}, p(3, 7, 8)))
	if r.Duplicate || r.TimestampsUs[0] != 0 || r.TimestampsUs[1] == 0 {
		t.Fatalf("mixed: %+v", r)
	}
	s, _, _ := e.db.GetSession("c")
	if !slices.Equal(s.HeldQos2Ids, []uint32{7, 8}) {
		t.Fatalf("held %v", s.HeldQos2Ids)
	}
	// Held ids survive a reconnect (same session, new guard) and a restart.
	e.reopen()
	b := e.openSess("c", "", false, 60, "gw")
	if !slices.Equal(b.Session.HeldQos2Ids, []uint32{7, 8}) {
		t.Fatalf("held after resume %v", b.Session.HeldQos2Ids)
	}
	if _, err := e.db.Release(ctx, "c", a.Guard, 7); !errors.Is(err, ErrStaleGuard) {
		t.Fatalf("release under the old guard: %v", err)
	}
	if rel, err := e.db.Release(ctx, "c", b.Guard, 7); err != nil || !rel {
		t.Fatalf("release: %v %v", rel, err)
	}
	if rel, err := e.db.Release(ctx, "c", b.Guard, 7); err != nil || rel {
		t.Fatalf("second release: %v %v", rel, err)
	}
	r = must(e.db.Store(ctx, "c", []*storagev1.Message{q2("new")}, &Producer{ClientID: "c", Epoch: b.Guard, FirstSeq: 1, QoS2PacketIDs: []uint16{7}}))
	if r.Duplicate {
		t.Fatal("id 7 after release: duplicate")
	}
	got := map[string]bool{}
	for _, m := range readAllCommitted(t, e.db) {
		got[string(m.Payload)] = true
	}
	for _, want := range []string{"first", "other", "new"} {
		if !got[want] {
			t.Errorf("%q not stored", want)
		}
	}
	for _, not := range []string{"resend", "again"} {
		if got[not] {
			t.Errorf("%q stored", not)
		}
	}
	// A clean start is a new session: held ids are dropped.
	c, err := e.db.OpenSession(ctx, OpenSessionRequest{ClientID: "c", CleanStart: true, ExpiryIntervalS: 60})
	if err != nil || c.SessionPresent || len(c.Session.HeldQos2Ids) != 0 {
		t.Fatalf("clean start: %+v %v", c, err)
	}
	if r := must(e.db.Store(ctx, "c", []*storagev1.Message{q2("after clean")}, &Producer{ClientID: "c", Epoch: c.Guard, FirstSeq: 1, QoS2PacketIDs: []uint16{8}})); r.Duplicate {
		t.Fatal("id 8 after a clean start: duplicate")
	}
	// Malformed ids.
	if _, err := e.db.Store(ctx, "c", []*storagev1.Message{msg("a", "b")}, &Producer{ClientID: "c", Epoch: c.Guard, FirstSeq: 2, QoS2PacketIDs: []uint16{9}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("id on a QoS 1 message: %v", err)
	}
}

func TestSessionCommit(t *testing.T) {
	e := newSessEnv(t, 2)
	ctx := context.Background()
	a := e.openSess("c", "", false, 60, "gw")
	key := &storagev1.StreamKey{SubscriptionId: 1, Shard: 1, Generation: 1, StaticIndex: []byte{0, 0, 0, 1}}
	c := subCommit("c", a.Guard, 1, 10, "a/+")
	c.PutStreams = []*storagev1.StreamRing{{Key: key, Batches: []*storagev1.BatchRecord{{ItBegin: []byte("b"), ItEnd: []byte("e"), Count: 3, FirstSeqnoQos1: 1, SubState: 10}}}}
	c.PutRetained = []*storagev1.RetainedBatch{{Key: &storagev1.RetainedBatchKey{SubscriptionId: 1, Id: 1}, Count: 1, SubState: 10, Records: []byte("opaque")}}
	c.Seqnos = &storagev1.SeqnoTracks{NextQos1: 3, DupQos1: 3}
	c.LastId = u64(10)
	if err := e.db.CommitSession(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Re-SUBSCRIBE: a new state version; the old one stays while the
	// batch refers to it.
	c2 := subCommit("c", a.Guard, 1, 11, "a/+")
	c2.PutStates[0].Qos = 2
	if err := e.db.CommitSession(ctx, c2); err != nil {
		t.Fatal(err)
	}
	s, _, _ := e.db.GetSession("c")
	if len(s.States) != 2 || s.Record.Seqnos.NextQos1 != 3 || s.Record.LastId != 10 || len(s.Retained) != 1 {
		t.Fatalf("after re-subscribe: %v", s)
	}
	// Immutable versions.
	bad := subCommit("c", a.Guard, 1, 11, "a/+")
	if err := e.db.CommitSession(ctx, bad); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("rewriting a state version: %v", err)
	}
	// Unknown references are refused, and leave the session unchanged.
	if err := e.db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "c", Guard: a.Guard, DeleteRetained: []*storagev1.RetainedBatchKey{{SubscriptionId: 1, Id: 1}},
		PutStreams: []*storagev1.StreamRing{{Key: key, Batches: []*storagev1.BatchRecord{{SubState: 99}}}}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown state version: %v", err)
	}
	// Acking the batch and the retained batch frees version 10.
	if err := e.db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "c", Guard: a.Guard, DeleteStreams: []*storagev1.StreamKey{key},
		DeleteRetained: []*storagev1.RetainedBatchKey{{SubscriptionId: 1, Id: 1}}, MissedMessages: u64(4)}); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	s, _, _ = e.db.GetSession("c")
	if len(s.States) != 1 || s.States[0].Id != 11 || len(s.Streams) != 0 || len(s.Retained) != 0 || s.Record.MissedMessages != 4 || len(s.Subscriptions) != 1 {
		t.Fatalf("after acks and reopen: %v", s)
	}
	// Unsubscribe: the subscription and its last version go.
	if err := e.db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "c", Guard: a.Guard, DeleteSubscriptions: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	s, _, _ = e.db.GetSession("c")
	if len(s.States) != 0 || len(s.Subscriptions) != 0 {
		t.Fatalf("after unsubscribe: %v", s)
	}
	if err := e.db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "nobody", Guard: 1}); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("commit of an absent session: %v", err)
	}
}

func TestSessionList(t *testing.T) {
	e := newSessEnv(t, 3)
	want := map[string]bool{}
	for i := range 25 {
		cid := fmt.Sprintf("c%02d", i)
		e.openSess(cid, "", false, 60, "gw")
		want[cid] = true
	}
	var cur SessionCursor
	got := map[string]bool{}
	for pages := 0; ; pages++ {
		page, next := e.db.ListSessions(cur, 4)
		for _, s := range page {
			if got[s.Record.ClientId] {
				t.Fatalf("%s listed twice", s.Record.ClientId)
			}
			got[s.Record.ClientId] = true
		}
		if next == nil {
			break
		}
		cur = *next
		if pages > 20 {
			t.Fatal("too many pages")
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d of %d", len(got), len(want))
	}
}
