package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/testpki"
)

// TestCrossIdentityTakeoverIsDSDPolicy: a request that asks for a
// takeover across usernames gets it only when dsd's own configuration
// allows it.
func TestCrossIdentityTakeoverIsDSDPolicy(t *testing.T) {
	c, _ := startServer(t) // mqtt.allow_cross_identity_takeover = false
	ctx := context.Background()
	ss := c.Sessions()
	if _, err := ss.OpenSession(ctx, openReq("c1", "alice", "gw", 1)); err != nil {
		t.Fatal(err)
	}
	req := openReq("c1", "mallory", "gw", 1)
	req.AllowCrossIdentityTakeover = true
	if _, err := ss.OpenSession(ctx, req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("takeover by another username asking for it, dsd not allowing it: %v; want PermissionDenied", err)
	}
}

func openReq(cid, user, gw string, epoch uint64) *dsdv1.OpenSessionRequest {
	return &dsdv1.OpenSessionRequest{ClientId: cid, Username: user, ProtocolVersion: 5, ExpiryIntervalS: 60, GatewayId: gw, GatewayEpoch: epoch}
}

func TestSessionServiceErrors(t *testing.T) {
	c, _ := startServerWith(t, func(o *Options) { o.AllowCrossIdentityTakeover = true })
	ctx := context.Background()
	ss := c.Sessions()
	a, err := ss.OpenSession(ctx, openReq("c1", "alice", "gw", 1))
	if err != nil || a.GetSessionPresent() {
		t.Fatalf("open: %v %v", a, err)
	}
	if _, err := ss.OpenSession(ctx, openReq("c1", "bob", "gw", 1)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("takeover by another user: %v", err)
	}
	req := openReq("c1", "bob", "gw", 1)
	req.AllowCrossIdentityTakeover = true
	b, err := ss.OpenSession(ctx, req)
	if err != nil || !b.GetSessionPresent() || !b.GetTakenOver() {
		t.Fatalf("allowed takeover: %v %v", b, err)
	}
	commit := func(guard uint64) error {
		_, err := ss.CommitSession(ctx, &dsdv1.CommitSessionRequest{Commit: &storagev1.SessionCommit{ClientId: "c1", Guard: guard, LastId: ptr(uint64(3))}})
		return err
	}
	if err := commit(a.GetGuard()); status.Code(err) != codes.Aborted {
		t.Fatalf("stale commit: %v", err)
	}
	if err := commit(b.GetGuard()); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: "c1", Guard: a.GetGuard()}); status.Code(err) != codes.Aborted {
		t.Fatalf("old owner's disconnect: %v", err)
	}
	// Store under the session's guard; a QoS 2 held id is a duplicate
	// until released.
	q2 := &storagev1.Message{Topic: "t", Payload: []byte("x"), Qos: 2}
	store := func(seq uint64) dsdv1.StoreResult {
		r, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "c1", Messages: []*storagev1.Message{q2},
			Producer: &dsdv1.Producer{ClientId: "c1", Epoch: b.GetGuard(), FirstSeq: seq, Qos2PacketIds: []uint32{9}}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetResult()
	}
	if store(1) != dsdv1.StoreResult_STORE_RESULT_STORED || store(2) != dsdv1.StoreResult_STORE_RESULT_DUPLICATE {
		t.Fatal("held id not a duplicate")
	}
	if r, err := ss.Release(ctx, &dsdv1.ReleaseRequest{ClientId: "c1", Guard: b.GetGuard(), PacketId: 9}); err != nil || !r.GetReleased() {
		t.Fatalf("release: %v %v", r, err)
	}
	if store(3) != dsdv1.StoreResult_STORE_RESULT_STORED {
		t.Fatal("released id not stored")
	}
	if _, err := ss.Release(ctx, &dsdv1.ReleaseRequest{ClientId: "c1", Guard: b.GetGuard(), PacketId: 70000}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad packet id: %v", err)
	}
	g, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: "c1"})
	if err != nil || g.GetSession().GetRecord().GetLastId() != 3 || g.GetSession().GetRecord().GetUsername() != "bob" {
		t.Fatalf("get: %v %v", g, err)
	}
	if _, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get of an absent session: %v", err)
	}
	if _, err := ss.DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "c1", Guard: ptr(a.GetGuard())}); status.Code(err) != codes.Aborted {
		t.Fatalf("delete with a stale guard: %v", err)
	}
	// Expiry 0 in CONNECT, non-zero in DISCONNECT: a protocol error.
	z := openReq("z", "", "gw", 1)
	z.ExpiryIntervalS = 0
	zr, err := ss.OpenSession(ctx, z)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: "z", Guard: zr.GetGuard(), ExpiryIntervalS: ptr(uint32(5))}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("raising expiry 0: %v", err)
	}
	if r, err := ss.Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: "z", Guard: zr.GetGuard()}); err != nil || !r.GetEnded() {
		t.Fatalf("expiry-0 disconnect: %v %v", r, err)
	}
	// Paged listing over all shards.
	for i := range 7 {
		if _, err := ss.OpenSession(ctx, openReq(fmt.Sprintf("l%d", i), "", "gw", 1)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := c.ListAllSessions(ctx, 3, func(*dsdv1.SessionSummary) error { n++; return nil }); err != nil || n != 8 {
		t.Fatalf("list: %d sessions, %v", n, err)
	}
	if _, err := ss.ListSessions(ctx, &dsdv1.ListSessionsRequest{PageToken: "zz"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad token: %v", err)
	}
	if r, err := ss.DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "c1", Guard: ptr(b.GetGuard())}); err != nil || !r.GetDeleted() {
		t.Fatalf("delete: %v %v", r, err)
	}
}

func TestSessionDeleteWithoutGuardNeedsAdmin(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	ctx := context.Background()
	gw := dialAs(t, pki, srv, "gw-1").Sessions()
	o, err := gw.OpenSession(ctx, openReq("c", "", "gw-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "c"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gateway deleting without a guard: %v", err)
	}
	if r, err := gw.DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "c", Guard: ptr(o.GetGuard())}); err != nil || !r.GetDeleted() {
		t.Fatalf("gateway deleting with its guard: %v %v", r, err)
	}
	if _, err := gw.OpenSession(ctx, openReq("c", "", "gw-1", 1)); err != nil {
		t.Fatal(err)
	}
	if r, err := dialAs(t, pki, srv, "ops").Sessions().DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "c"}); err != nil || !r.GetDeleted() {
		t.Fatalf("admin deleting without a guard: %v %v", r, err)
	}
}

// TestSessionTakeoverKick: gateway A owns a session with a Read and a
// Watch entry tied to its guard; gateway B opens the same client id. A's
// link (and only A's) gets a kick naming (client id, A's guard), A's
// entries end, and B's entries under its new guard keep working. An entry
// added with A's stale guard is refused.
func TestSessionTakeoverKick(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	ctx := context.Background()
	ss := e.c.Sessions()
	openLink := func(gw string, epoch uint64) (*client.Link, *events) {
		l, err := e.c.OpenLink(ctx, gw, epoch)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, recvAll(l)
	}
	la, eva := openLink("gwA", 1)
	lb, evb := openLink("gwB", 1)
	// Another epoch of gateway A: the kick must not go there.
	_, eva2 := openLink("gwA", 2)

	a, err := ss.OpenSession(ctx, openReq("car", "u", "gwA", 1))
	if err != nil {
		t.Fatal(err)
	}
	refA := &dsdv1.SessionRef{ClientId: "car", Guard: a.GetGuard()}
	e.store("pub", "fleet/car", []byte("m1"))
	it := e.iteratorFor("fleet/car", 0)
	readA, err := la.AddSessionRead(refA, it, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b := eva.batch(t); b.GetEntryId() != readA || payloads(b)[0] != "m1" {
		t.Fatalf("A's batch: %v", b)
	}
	watchA, err := la.AddSessionWatch(refA, "fleet/#", -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if an := eva.announcement(t); an.GetEntryId() != watchA {
		t.Fatalf("A's announcement: %v", an)
	}
	// An entry without a session is not touched by the takeover.
	plain, err := la.AddWatch("other/#", -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	eva.announcement(t)

	b, err := ss.OpenSession(ctx, openReq("car", "u", "gwB", 1))
	if err != nil || !b.GetTakenOver() {
		t.Fatalf("takeover: %v %v", b, err)
	}
	r := eva.next(t)
	if k := r.GetKick(); k == nil || k.GetClientId() != "car" || k.GetGuard() != a.GetGuard() || k.GetReason() != "takeover" {
		t.Fatalf("want A's kick, got %v", r)
	}
	ended := map[uint64]codes.Code{}
	for range 2 {
		ee := eva.entryError(t)
		if !ee.GetEntryEnded() {
			t.Fatalf("entry error %v", ee)
		}
		ended[ee.GetEntryId()] = codes.Code(ee.GetCode())
	}
	if ended[readA] != codes.Aborted || ended[watchA] != codes.Aborted {
		t.Fatalf("ended entries %v", ended)
	}
	// A's removed Read entry gets no more batches; B reads under its guard.
	refB := &dsdv1.SessionRef{ClientId: "car", Guard: b.GetGuard()}
	readB, err := lb.AddSessionRead(refB, it, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if bb := evb.batch(t); bb.GetEntryId() != readB {
		t.Fatalf("B's batch: %v", bb)
	}
	stale, err := la.AddSessionRead(refA, it, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ee := eva.entryError(t); ee.GetEntryId() != stale || codes.Code(ee.GetCode()) != codes.Aborted || !ee.GetEntryEnded() {
		t.Fatalf("entry with a stale guard: %v", ee)
	}
	e.store("pub", "fleet/car", []byte("m2"))
	if bb := evb.batch(t); payloads(bb)[0] != "m2" {
		t.Fatalf("B's second batch: %v", bb)
	}
	if err := la.Remove(plain); err != nil {
		t.Fatal(err)
	}
	// B's link got no kick, nor did A's other epoch; A got nothing more.
	eva.quiet(t, 100*time.Millisecond)
	evb.quiet(t, 10*time.Millisecond)
	eva2.quiet(t, 10*time.Millisecond)

	// A delete by the operator kicks the owner B.
	if _, err := ss.DeleteSession(ctx, &dsdv1.DeleteSessionRequest{ClientId: "car"}); err != nil {
		t.Fatal(err)
	}
	r = evb.next(t)
	if k := r.GetKick(); k == nil || k.GetGuard() != b.GetGuard() || k.GetReason() != "deleted" {
		t.Fatalf("want B's kick, got %v", r)
	}
	if ee := evb.entryError(t); ee.GetEntryId() != readB {
		t.Fatalf("B's entry: %v", ee)
	}
}

// TestResumeWatermarksStopAtTheEnd: OpenSession's watermarks for a resumed
// session stop at the highest watermark of its previous connection's end
// (messages stored later were never sent to it: no DUP); after a takeover
// (the previous connection still open) they are today's.
func TestResumeWatermarksStopAtTheEnd(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	ss := c.Sessions()
	store := func() {
		for i := range 8 { // every shard moves on
			if _, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: fmt.Sprint("p", i), Messages: []*storagev1.Message{{Topic: "t", Qos: 1}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	maxOf := func(ws []int64) int64 {
		m := int64(0)
		for _, w := range ws {
			m = max(m, w)
		}
		return m
	}
	o, err := ss.OpenSession(ctx, openReq("c", "", "gw", 1))
	if err != nil {
		t.Fatal(err)
	}
	store()
	end := highest(t, c)
	if _, err := ss.Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: "c", Guard: o.GetGuard()}); err != nil {
		t.Fatal(err)
	}
	store()
	r, err := ss.OpenSession(ctx, openReq("c", "", "gw", 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := maxOf(r.GetWatermarksUs()); got != end {
		t.Fatalf("resume after a disconnect: highest watermark %d, want the end's %d", got, end)
	}
	store()
	now := highest(t, c)
	taken, err := ss.OpenSession(ctx, openReq("c", "", "gw", 1)) // a takeover: r's connection is open
	if err != nil {
		t.Fatal(err)
	}
	if got := maxOf(taken.GetWatermarksUs()); got < now {
		t.Fatalf("takeover: highest watermark %d, want today's (at least %d)", got, now)
	}
}

// highest is the highest of dsd's watermarks now.
func highest(t *testing.T, c *client.Client) int64 {
	t.Helper()
	wm, err := c.Storage.Watermarks(context.Background(), &dsdv1.WatermarksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h := int64(0)
	for _, w := range wm.GetWatermarks() {
		h = max(h, w.GetStartTimeUs())
	}
	return h
}
