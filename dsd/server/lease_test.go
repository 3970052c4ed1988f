package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/storage"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// leaseClock is a settable clock shared by storage and the leases.
type leaseClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *leaseClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *leaseClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const testInterval = 2 * time.Second

// leaseEnv is a storage DB on a memory FS and the leases over it, both on
// one fake clock; the checker is driven by step.
type leaseEnv struct {
	t     *testing.T
	clock *leaseClock
	opts  storage.Options
	db    *storage.DB
	l     *leases
}

func newLeaseEnv(t *testing.T) *leaseEnv {
	e := &leaseEnv{t: t, clock: &leaseClock{now: time.Unix(1_700_000_000, 0)}}
	e.opts = storage.Options{DataDir: "data", FS: vfs.NewMem(), NShards: 4, IdleTickInterval: time.Hour, Now: e.clock.Now}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *leaseEnv) open() {
	e.t.Helper()
	db, err := storage.Open(e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db = db
	e.l = newLeases(db, testInterval, e.clock.Now, slog.New(slog.DiscardHandler))
	e.l.start()
}

func (e *leaseEnv) close() {
	if e.db != nil {
		if err := e.db.Close(); err != nil {
			e.t.Error(err)
		}
		e.db = nil
	}
}

// step advances the clock by d in checker ticks, renewing the given
// epochs at every tick, and returns the epochs that died.
func (e *leaseEnv) step(d time.Duration, alive ...storage.GatewayEpoch) []storage.GatewayEpoch {
	var dead []storage.GatewayEpoch
	for end := e.clock.Now().Add(d); e.clock.Now().Before(end); {
		e.clock.Advance(e.l.tickPeriod())
		for _, ge := range alive {
			e.l.heard(ge)
		}
		dead = append(dead, e.l.check(context.Background())...)
	}
	return dead
}

func (e *leaseEnv) openSession(cid, gw string, epoch uint64, delay uint32) uint64 {
	e.t.Helper()
	res, err := e.db.OpenSession(context.Background(), storage.OpenSessionRequest{ClientID: cid, ProtocolVersion: 5,
		ExpiryIntervalS: 3600, GatewayID: gw, GatewayEpoch: epoch,
		Will: &storagev1.Will{Message: &storagev1.Message{Topic: "will/" + cid, Payload: []byte("gone"), Qos: 1}, DelayIntervalS: delay}})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Guard
}

func (e *leaseEnv) record(cid string) *storagev1.SessionRecord {
	e.t.Helper()
	s, _, ok := e.db.GetSession(cid)
	if !ok {
		e.t.Fatalf("no session %s", cid)
	}
	return s.Record
}

// willsStored reports whether any will message is in a stream.
func (e *leaseEnv) willsStored() bool {
	e.t.Helper()
	streams, err := e.db.GetStreams("will/#", 0, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(streams) > 0
}

func TestLeaseExpiry(t *testing.T) {
	e := newLeaseEnv(t)
	gw1, gw2 := storage.GatewayEpoch{GatewayID: "gw", Epoch: 1}, storage.GatewayEpoch{GatewayID: "gw", Epoch: 2}
	for _, ge := range []storage.GatewayEpoch{gw1, gw2} {
		if _, err := e.l.hello(ge.GatewayID, ge.Epoch, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.openSession("a", "gw", 1, 5)
	e.openSession("b", "gw", 1, 5)
	e.openSession("c", "gw", 2, 5)
	// Heartbeats of epoch 1 stop; epoch 2 goes on.
	if dead := e.step(3*testInterval-e.l.tickPeriod(), gw2); len(dead) != 0 {
		t.Fatalf("died early: %v", dead)
	}
	if e.record("a").Connected != true {
		t.Fatal("a disconnected before 3 intervals")
	}
	dead := e.step(e.l.tickPeriod(), gw2)
	if len(dead) != 1 || dead[0] != gw1 {
		t.Fatalf("dead after 3 intervals: %v", dead)
	}
	now := e.clock.Now().UnixMicro()
	for _, cid := range []string{"a", "b"} {
		r := e.record(cid)
		if r.Connected || !r.AbnormalDisconnect || r.DisconnectedAtUs != now || r.WillAtUs != now+5e6 {
			t.Fatalf("%s after its epoch died: %v", cid, r)
		}
	}
	if r := e.record("c"); !r.Connected || r.WillAtUs != 0 {
		t.Fatalf("c of the live epoch: %v", r)
	}
	// The dead epoch, and older ones, are refused; a new one is welcome.
	for _, epoch := range []uint64{0, 1} {
		_, err := e.l.hello("gw", epoch, nil)
		if !errors.Is(err, errGatewayEpochDead) || status.Code(statusFor(err)) != codes.FailedPrecondition {
			t.Fatalf("hello with epoch %d: %v", epoch, err)
		}
	}
	if _, err := e.l.hello("gw", 3, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.hello("other-gw", 1, nil); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseRestartGrace: dsd restarts with sessions of three gateways
// connected; the gateways re-register with new epochs and re-open their
// sessions within the grace. No will fires, nothing is disconnected.
func TestLeaseRestartGrace(t *testing.T) {
	e := newLeaseEnv(t)
	gws := []string{"gw-a", "gw-b", "gw-c"}
	for _, gw := range gws {
		for _, n := range []string{"1", "2"} {
			e.openSession(gw+"/"+n, gw, 1, 0) // will delay 0: a death would publish at once
		}
	}
	e.close()
	e.clock.Advance(time.Hour) // dsd was down for an hour
	e.open()
	if dead := e.step(2 * testInterval); len(dead) != 0 {
		t.Fatalf("died within the grace: %v", dead)
	}
	var alive []storage.GatewayEpoch
	for _, gw := range gws {
		if _, err := e.l.hello(gw, 2, nil); err != nil {
			t.Fatal(err)
		}
		alive = append(alive, storage.GatewayEpoch{GatewayID: gw, Epoch: 2})
		for _, n := range []string{"1", "2"} {
			e.openSession(gw+"/"+n, gw, 2, 0)
		}
	}
	// The old epochs die after the grace and end nothing.
	dead := e.step(2*testInterval, alive...)
	if len(dead) != 3 {
		t.Fatalf("old epochs dead: %v", dead)
	}
	for _, gw := range gws {
		for _, n := range []string{"1", "2"} {
			if r := e.record(gw + "/" + n); !r.Connected || r.OwnerEpoch != 2 {
				t.Fatalf("%s/%s: %v", gw, n, r)
			}
		}
	}
	if e.willsStored() {
		t.Fatal("a will fired")
	}
}

// TestLeaseStall: a checker tick more than an interval late (dsd paused)
// gives every epoch a fresh grace.
func TestLeaseStall(t *testing.T) {
	e := newLeaseEnv(t)
	gw := storage.GatewayEpoch{GatewayID: "gw", Epoch: 1}
	if _, err := e.l.hello("gw", 1, nil); err != nil {
		t.Fatal(err)
	}
	e.openSession("a", "gw", 1, 0)
	e.step(testInterval, gw)
	// dsd stops for 5 intervals: the gateway's silence is not counted.
	e.clock.Advance(5 * testInterval)
	if dead := e.l.check(context.Background()); len(dead) != 0 {
		t.Fatalf("died after a stall of dsd: %v", dead)
	}
	if dead := e.step(3*testInterval - e.l.tickPeriod()); len(dead) != 0 {
		t.Fatalf("died within the fresh grace: %v", dead)
	}
	if dead := e.step(e.l.tickPeriod()); len(dead) != 1 {
		t.Fatalf("not dead after the fresh grace: %v", dead)
	}
	if r := e.record("a"); r.Connected || !e.willsStored() {
		t.Fatalf("a after its epoch died: %v (will stored: %v)", r, e.willsStored())
	}
}

// TestLinkHeartbeat: a heartbeat is acked with its seq, the welcome names
// the interval, and a hello with a dead epoch is refused.
func TestLinkHeartbeat(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	if got := l.Welcome.GetHeartbeatIntervalMs(); got != uint32(DefaultHeartbeatInterval.Milliseconds()) {
		t.Fatalf("welcome heartbeat interval %d", got)
	}
	ev := recvAll(l)
	if err := l.Heartbeat(7); err != nil {
		t.Fatal(err)
	}
	r := ev.next(t)
	if r.GetHeartbeatAck().GetSeq() != 7 {
		t.Fatalf("got %v, want a heartbeat ack 7", r)
	}
	// Epoch 1 of gw-test dies (its lease is made to run out).
	lz := e.srv.link.leases
	lz.mu.Lock()
	lz.mu.live[storage.GatewayEpoch{GatewayID: "gw-test", Epoch: 1}].deadline = time.Time{}
	lz.mu.Unlock()
	lz.check(context.Background())
	select {
	case _, ok := <-ev.ch:
		if ok {
			t.Fatal("a response after the lease expired")
		}
		if err := <-ev.err; status.Code(err) != codes.Unavailable {
			t.Fatalf("link end: %v", err)
		}
	case <-time.After(eventTimeout):
		t.Fatal("the dead epoch's link stays open")
	}
	_, err := e.c.OpenLink(context.Background(), "gw-test", 1)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("hello with a dead epoch: %v", err)
	}
	l2, err := e.c.OpenLink(context.Background(), "gw-test", 2)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
}

// TestLeaseReplicatedEpochs: with replicated shards, a site tracks the
// epochs that own connected sessions in its replicas even when the
// gateway never said hello to it (it gets a fresh grace and dies
// unheard), and ends a dead epoch's sessions again when they show up
// connected later (a shard this site came to lead after the epoch died
// here).
func TestLeaseReplicatedEpochs(t *testing.T) {
	e := newLeaseEnv(t)
	e.l.replicated = func() bool { return true }
	gw := storage.GatewayEpoch{GatewayID: "gw", Epoch: 7}
	e.openSession("a", "gw", 7, 0)
	if dead := e.step(3*testInterval - e.l.tickPeriod()); len(dead) != 0 {
		t.Fatalf("an epoch never heard from died before its grace: %v", dead)
	}
	if dead := e.step(2 * e.l.tickPeriod()); len(dead) != 1 || dead[0] != gw {
		t.Fatalf("dead after the grace: %v", dead)
	}
	if r := e.record("a"); r.Connected {
		t.Fatalf("a after its epoch died: %v", r)
	}
	// A session of the dead epoch still connected (ended by no leader
	// yet) is ended at the next scan.
	e.openSession("b", "gw", 7, 0)
	if dead := e.step(testInterval); len(dead) != 1 || dead[0] != gw {
		t.Fatalf("the dead epoch was not ended again: %v", dead)
	}
	if r := e.record("b"); r.Connected {
		t.Fatalf("b of the dead epoch: %v", r)
	}
	if dead := e.step(2 * testInterval); len(dead) != 0 {
		t.Fatalf("ended again with nothing connected: %v", dead)
	}
}
