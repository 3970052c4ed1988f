package storage

import (
	"context"
	"errors"
	"testing"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

const testGroup = "$share/g/t/#"

// grantTo records a new grant of stream (0, 1, "s") for member.
func (e *sessEnv) grantTo(member string, guard uint64, begin, end string, qos2 bool) uint64 {
	e.t.Helper()
	id, err := e.db.GrantShared(context.Background(), testGroup, &storagev1.SharedGrant{Member: member, Guard: guard,
		Shard: 0, Generation: 1, StaticIndex: []byte("s"), ItBegin: []byte(begin), ItEnd: []byte(end), Count: 3, Qos2: qos2})
	if err != nil {
		e.t.Fatalf("grant to %s: %v", member, err)
	}
	return id
}

func (e *sessEnv) grants() map[uint64]*storagev1.SharedGrant {
	out := map[uint64]*storagev1.SharedGrant{}
	for _, g := range e.db.SharedGrants(testGroup) {
		out[g.Id] = g
	}
	return out
}

var testStream = Stream{Shard: 0, Generation: 1, StaticIndex: []byte("s")}

// TestSharedGrantsFollowMembers: a grant belongs to its member until acked;
// the member's disconnect hands its grants back (as redeliveries) but for a
// recorded QoS 2 one, which its session's end drops; the state survives a
// reopen, and a group no session subscribes to is forgotten.
func TestSharedGrantsFollowMembers(t *testing.T) {
	e := newSessEnv(t, 4)
	ctx := context.Background()
	a := e.openSess("a", "u", true, 100, "gw")
	b := e.openSess("b", "u", true, 100, "gw")
	for _, s := range []struct {
		cid   string
		guard uint64
	}{{"a", a.Guard}, {"b", b.Guard}} {
		if err := e.db.CommitSession(ctx, subCommit(s.cid, s.guard, 1, 1, testGroup)); err != nil {
			t.Fatal(err)
		}
	}
	g1 := e.grantTo("a", a.Guard, "i0", "i1", false)
	g2 := e.grantTo("a", a.Guard, "i1", "i2", true)
	g3 := e.grantTo("a", a.Guard, "i2", "i3", true) // QoS 2, never recorded: not sent
	if g1 != 1 || g2 != 2 || g3 != 3 {
		t.Fatalf("grant ids %d %d %d, want 1 2 3", g1, g2, g3)
	}
	if st := e.db.SharedStream(testGroup, testStream); string(st.Cursor) != "i3" || st.Waiting != nil {
		t.Fatalf("stream state %+v", st)
	}
	ring := &storagev1.SessionCommit{ClientId: "a", Guard: a.Guard, PutStreams: []*storagev1.StreamRing{{
		Key:     &storagev1.StreamKey{SubscriptionId: 1, Shard: 0, Generation: 1, StaticIndex: []byte("s")},
		Batches: []*storagev1.BatchRecord{{ItBegin: []byte("i0"), ItEnd: []byte("i1"), Count: 3, SubState: 1, SharedGrant: g1}, {ItBegin: []byte("i1"), ItEnd: []byte("i2"), Count: 3, SubState: 1, SharedGrant: g2}},
	}}}
	if err := e.db.CommitSession(ctx, ring); err != nil {
		t.Fatal(err)
	}
	e.disconnect("a", a.Guard, true)
	waitFor(t, "a's grants handed back", func() bool {
		gs := e.grants()
		return gs[g1].GetMember() == "" && gs[g3].GetMember() == ""
	})
	gs := e.grants()
	if gs[g2].GetMember() != "a" || !gs[g1].Redelivery {
		t.Fatalf("after a's disconnect: %v", gs)
	}
	if st := e.db.SharedStream(testGroup, testStream); st.Waiting.GetId() != g1 || string(st.Cursor) != "i3" {
		t.Fatalf("stream state %+v", st)
	}
	// The waiting grant goes to b, which finishes it.
	if id, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Id: g1, Member: "b", Guard: b.Guard}); err != nil || id != g1 {
		t.Fatalf("re-grant: %d, %v", id, err)
	}
	if _, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Id: g1, Member: "b", Guard: b.Guard}); err == nil {
		t.Fatal("a grant handed out twice")
	}
	if err := e.db.AckShared(ctx, testGroup, "a", g1); err != nil {
		t.Fatal(err)
	}
	if e.grants()[g1] == nil {
		t.Fatal("an ack by a member that no longer holds the grant removed it")
	}
	if err := e.db.AckShared(ctx, testGroup, "b", g1); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	gs = e.grants()
	if len(gs) != 2 || gs[g1] != nil || gs[g2].GetMember() != "a" || gs[g3].GetMember() != "" {
		t.Fatalf("after reopen: %v", gs)
	}
	// a's session ends: its recorded QoS 2 grant is dropped.
	if _, err := e.db.DeleteSession(ctx, "a", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's QoS 2 grant dropped", func() bool { return e.grants()[g2] == nil })
	if len(e.db.SharedGrants(testGroup)) == 0 {
		t.Fatal("group forgotten while b subscribes")
	}
	// b unsubscribes: no member is left, the group is forgotten.
	b2 := e.openSess("b", "u", false, 100, "gw")
	if err := e.db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "b", Guard: b2.Guard, DeleteSubscriptions: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "group forgotten", func() bool { return e.db.SharedStream(testGroup, testStream).Cursor == nil })
}

// TestSharedReconcileAtOpen: a grant whose member's session is gone (the
// end's hand-back lost in a crash) goes back to the group at Open.
func TestSharedReconcileAtOpen(t *testing.T) {
	e := newSessEnv(t, 4)
	ctx := context.Background()
	b := e.openSess("b", "u", true, 100, "gw")
	if err := e.db.CommitSession(ctx, subCommit("b", b.Guard, 1, 1, testGroup)); err != nil {
		t.Fatal(err)
	}
	g := e.grantTo("ghost", 7, "i0", "i1", false) // no such session
	e.reopen()
	waitFor(t, "the ghost's grant handed back", func() bool { return e.grants()[g].GetMember() == "" })
}

// TestSharedStreamGone: a group's stream whose generation was dropped is
// forgotten: its cursor and the grants that waited for a member (counted
// missed); a grant a member holds stays until its ack; other streams of
// the group are untouched; the state survives a reopen. A drop by
// retention (DropGeneration) does it by itself.
func TestSharedStreamGone(t *testing.T) {
	e := newSessEnv(t, 4)
	ctx := context.Background()
	a := e.openSess("a", "u", true, 100, "gw")
	if err := e.db.CommitSession(ctx, subCommit("a", a.Guard, 1, 1, testGroup)); err != nil {
		t.Fatal(err)
	}
	held := e.grantTo("a", a.Guard, "i0", "i1", false)
	waiting := e.grantTo("a", a.Guard, "i1", "i2", false)
	other := Stream{Shard: 1, Generation: 1, StaticIndex: []byte("s")}
	if _, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Member: "a", Guard: a.Guard, Shard: 1, Generation: 1,
		StaticIndex: []byte("s"), ItBegin: []byte("o0"), ItEnd: []byte("o1"), Count: 5}); err != nil {
		t.Fatal(err)
	}
	// a disconnects without acknowledging: its grants go back to the group;
	// b takes held again, so one grant of the stream has a member.
	e.disconnect("a", a.Guard, true)
	waitFor(t, "a's grants handed back", func() bool { return e.grants()[waiting].GetMember() == "" })
	b := e.openSess("b", "u", true, 100, "gw")
	if _, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Id: held, Member: "b", Guard: b.Guard}); err != nil {
		t.Fatal(err)
	}
	before := e.db.SharedStats().Missed
	if err := e.db.SharedStreamGone(ctx, testGroup, testStream); err != nil {
		t.Fatal(err)
	}
	if got := e.db.SharedStats().Missed - before; got != 3 {
		t.Fatalf("missed %d messages, want the waiting grant's 3", got)
	}
	check := func(when string) {
		t.Helper()
		gs := e.grants()
		if gs[waiting] != nil || gs[held].GetMember() != "b" {
			t.Fatalf("%s: grants %v: want the waiting one forgotten, b's kept", when, gs)
		}
		if st := e.db.SharedStream(testGroup, testStream); st.Cursor != nil || st.Waiting != nil {
			t.Fatalf("%s: dropped stream state %+v, want none", when, st)
		}
		if st := e.db.SharedStream(testGroup, other); string(st.Cursor) != "o1" || st.Waiting == nil {
			t.Fatalf("%s: other stream %+v, want its cursor and waiting grant", when, st)
		}
	}
	check("after")
	e.reopen()
	check("after reopen")
	if err := e.db.SharedStreamGone(ctx, "t/#", testStream); err == nil {
		t.Fatal("a plain filter was taken as a group")
	}
	// Retention drops generation 1 of shard 1: the group forgets its stream
	// there by itself (nobody would read it again).
	before = e.db.SharedStats().Missed
	if _, err := e.db.AddGeneration(1); err != nil {
		t.Fatal(err)
	}
	if err := e.db.DropGeneration(1, 1); err != nil {
		t.Fatal(err)
	}
	// The counter moves once the command is committed, after the state.
	waitFor(t, "the dropped generation's group stream forgotten, its waiting grant's 5 messages missed", func() bool {
		st := e.db.SharedStream(testGroup, other)
		return st.Cursor == nil && st.Waiting == nil && e.db.SharedStats().Missed-before == 5
	})
}

// TestSharedEndedMemberGetsNoGrant: once a group applied the end of a
// member's connection, a grant to that member under the ended guard (a
// reader's turn still in flight, here or at another site) is refused, new
// or waiting, also after a reopen, and also for a member that held no
// grant when it ended (its end still reaches its groups); the member's
// next connection, with a higher guard, gets grants again.
func TestSharedEndedMemberGetsNoGrant(t *testing.T) {
	e := newSessEnv(t, 4)
	ctx := context.Background()
	a := e.openSess("a", "u", true, 100, "gw")
	b := e.openSess("b", "u", true, 100, "gw")
	for _, s := range []struct {
		cid   string
		guard uint64
	}{{"a", a.Guard}, {"b", b.Guard}} {
		if err := e.db.CommitSession(ctx, subCommit(s.cid, s.guard, 1, 1, testGroup)); err != nil {
			t.Fatal(err)
		}
	}
	g1 := e.grantTo("a", a.Guard, "i0", "i1", false)
	e.disconnect("a", a.Guard, true)
	e.disconnect("b", b.Guard, true) // b holds nothing
	waitFor(t, "a's grant handed back", func() bool { return e.grants()[g1].GetMember() == "" })
	refused := func(when string) {
		t.Helper()
		for _, g := range []*storagev1.SharedGrant{
			{Member: "a", Guard: a.Guard, Shard: 0, Generation: 1, StaticIndex: []byte("s"), ItBegin: []byte("i1"), ItEnd: []byte("i2"), Count: 3},
			{Id: g1, Member: "a", Guard: a.Guard},
			{Member: "b", Guard: b.Guard, Shard: 0, Generation: 1, StaticIndex: []byte("s"), ItBegin: []byte("i1"), ItEnd: []byte("i2"), Count: 3},
		} {
			if _, err := e.db.GrantShared(ctx, testGroup, g); !errors.Is(err, ErrSharedMemberEnded) || !errors.Is(err, ErrStaleGuard) {
				t.Fatalf("%s: grant %d to %s under its ended guard %d: %v, want ErrSharedMemberEnded", when, g.Id, g.Member, g.Guard, err)
			}
		}
	}
	waitFor(t, "b's end applied by the group", func() bool {
		_, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Member: "b", Guard: b.Guard, Shard: 0, Generation: 1,
			StaticIndex: []byte("s"), ItBegin: []byte("i1"), ItEnd: []byte("i2"), Count: 3})
		return errors.Is(err, ErrSharedMemberEnded)
	})
	refused("after the ends")
	e.reopen()
	refused("after reopen")
	a2 := e.openSess("a", "u", false, 100, "gw")
	if id, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Id: g1, Member: "a", Guard: a2.Guard}); err != nil || id != g1 {
		t.Fatalf("the waiting grant to a's next connection: %d, %v", id, err)
	}
}
