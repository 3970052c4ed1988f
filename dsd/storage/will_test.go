package storage

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// openWill opens cid with a will on will/<cid> and the given delay.
func (e *sessEnv) openWill(cid string, clean bool, expiry, delay uint32, gw string, epoch uint64, retain bool) OpenSessionResult {
	e.t.Helper()
	m := msg("will/"+cid, "gone")
	m.Retain = retain
	res, err := e.db.OpenSession(context.Background(), OpenSessionRequest{ClientID: cid, Username: "u", ProtocolVersion: 5,
		CleanStart: clean, ExpiryIntervalS: expiry, GatewayID: gw, GatewayEpoch: epoch,
		Will: &storagev1.Will{Message: m, DelayIntervalS: delay}})
	if err != nil {
		e.t.Fatalf("open %s: %v", cid, err)
	}
	return res
}

func (e *sessEnv) disconnect(cid string, guard uint64, abnormal bool) bool {
	e.t.Helper()
	ended, err := e.db.Disconnect(context.Background(), DisconnectRequest{ClientID: cid, Guard: guard, Abnormal: abnormal})
	if err != nil {
		e.t.Fatalf("disconnect %s: %v", cid, err)
	}
	return ended
}

// tick advances the fake clock and runs every shard's tick (which fires
// the due wills and waits for their commits).
func (e *sessEnv) tick(d time.Duration) {
	e.t.Helper()
	e.clock.Advance(d)
	for i := range e.db.shards {
		if _, err := e.db.shards[i].do(context.Background(), &request{kind: reqTick}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// wills returns the payload count of will messages of cid in the streams.
func willCount(t *testing.T, db *DB, cid string) int {
	t.Helper()
	n := 0
	for _, m := range readAllCommitted(t, db) {
		if m.Topic == "will/"+cid {
			if m.PublisherClientId != cid || string(m.Payload) != "gone" {
				t.Fatalf("will message %v", m)
			}
			n++
		}
	}
	return n
}

func TestWillDelay(t *testing.T) {
	e := newSessEnv(t, 2)
	// Delay 0: published in the Disconnect's batch.
	a := e.openWill("zero", false, 100, 0, "gw", 1, false)
	e.disconnect("zero", a.Guard, true)
	if _, ok := e.db.willAt("zero"); ok {
		t.Fatal("delay 0: timer still armed")
	}
	sess, _, _ := e.db.GetSession("zero")
	if sess.Record.WillFiredAtUs == 0 || sess.Record.Will != nil {
		t.Fatalf("delay 0: record %v", sess.Record)
	}
	// Delay 5 s: not at 4 s, at 5 s.
	b := e.openWill("five", false, 100, 5, "gw", 1, false)
	e.disconnect("five", b.Guard, true)
	// Delay 100 s, expiry 10 s: at the session's end.
	c := e.openWill("long", false, 10, 100, "gw", 1, false)
	e.disconnect("long", c.Guard, true)
	e.tick(4 * time.Second)
	if n := willCount(t, e.db, "five"); n != 0 {
		t.Fatalf("five after 4 s: %d wills", n)
	}
	e.tick(time.Second)
	if n := willCount(t, e.db, "five"); n != 1 {
		t.Fatalf("five after 5 s: %d wills", n)
	}
	e.tick(4 * time.Second)
	if n := willCount(t, e.db, "long"); n != 0 {
		t.Fatalf("long after 9 s: %d wills", n)
	}
	e.tick(time.Second)
	if n := willCount(t, e.db, "long"); n != 1 {
		t.Fatalf("long at the session's end: %d wills", n)
	}
	// Later ticks and a reopen fire nothing again.
	e.reopen()
	e.tick(time.Hour)
	for cid, want := range map[string]int{"zero": 1, "five": 1, "long": 1} {
		if n := willCount(t, e.db, cid); n != want {
			t.Fatalf("%s: %d wills, want %d", cid, n, want)
		}
	}
}

func TestWillExpiryZeroAbnormal(t *testing.T) {
	e := newSessEnv(t, 1)
	a := e.openWill("c", false, 0, 30, "gw", 1, false)
	if !e.disconnect("c", a.Guard, true) {
		t.Fatal("expiry 0: session not ended")
	}
	if _, _, ok := e.db.GetSession("c"); ok {
		t.Fatal("session still there")
	}
	if n := willCount(t, e.db, "c"); n != 1 {
		t.Fatalf("%d wills, want 1 (published when the session ends)", n)
	}
}

func TestWillCancelAndDiscard(t *testing.T) {
	e := newSessEnv(t, 2)
	// Resume before the delay cancels [MQTT-3.1.3-9].
	a := e.openWill("resumer", false, 100, 5, "gw", 1, false)
	e.disconnect("resumer", a.Guard, true)
	e.tick(2 * time.Second)
	r := e.openSess("resumer", "u", false, 100, "gw")
	if !r.SessionPresent {
		t.Fatal("not resumed")
	}
	// DISCONNECT 0x00 discards.
	b := e.openWill("normal", false, 100, 5, "gw", 1, false)
	e.disconnect("normal", b.Guard, false)
	e.tick(time.Hour)
	for _, cid := range []string{"resumer", "normal"} {
		if n := willCount(t, e.db, cid); n != 0 {
			t.Fatalf("%s: %d wills", cid, n)
		}
	}
}

func TestWillTakeoverAndCleanStart(t *testing.T) {
	e := newSessEnv(t, 2)
	// Takeover resuming the session (clean start false): the same session
	// goes on, the old connection's will is not published.
	e.openWill("keep", false, 100, 5, "gwA", 1, false)
	if r := e.openWill("keep", false, 100, 5, "gwB", 1, false); !r.TakenOver || !r.SessionPresent {
		t.Fatalf("takeover: %+v", r)
	}
	// Takeover with clean start: the old session ends, its will is published
	// at once (delay 5 s notwithstanding).
	e.openWill("fresh", false, 100, 5, "gwA", 1, false)
	if r := e.openSess("fresh", "u", true, 100, "gwB"); !r.TakenOver || r.SessionPresent {
		t.Fatalf("clean takeover: %+v", r)
	}
	// Clean start after an abnormal disconnect with the timer armed: the
	// pending will is published with the old session's end.
	c := e.openWill("later", false, 100, 50, "gwA", 1, false)
	e.disconnect("later", c.Guard, true)
	e.openSess("later", "u", true, 100, "gwA")
	if n := willCount(t, e.db, "fresh"); n != 1 {
		t.Fatalf("fresh: %d wills", n)
	}
	if n := willCount(t, e.db, "later"); n != 1 {
		t.Fatalf("later: %d wills", n)
	}
	// The new connections' wills are not armed: nothing more fires.
	e.tick(time.Hour)
	for cid, want := range map[string]int{"keep": 0, "fresh": 1, "later": 1} {
		if n := willCount(t, e.db, cid); n != want {
			t.Fatalf("%s: %d wills, want %d", cid, n, want)
		}
	}
}

func TestWillRetainedAndSweep(t *testing.T) {
	e := newSessEnv(t, 2)
	a := e.openWill("ret", false, 10, 3, "gw", 1, true)
	e.disconnect("ret", a.Guard, true)
	e.tick(3 * time.Second)
	// The firing batch wrote the retained record.
	if m := getRetained(t, e.db, "will/ret"); m.GetPublisherClientId() != "ret" || string(m.GetPayload()) != "gone" {
		t.Fatalf("retained will %v", m)
	}
	// A will whose session expired while dsd was down is published by the
	// expiry sweep (late, but once).
	b := e.openWill("sweep", false, 5, 60, "gw", 1, false)
	e.disconnect("sweep", b.Guard, true)
	e.close()
	e.clock.Advance(time.Minute)
	e.open()
	if n, err := e.db.SweepSessions(context.Background()); err != nil || n != 2 { // ret and sweep
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if n := willCount(t, e.db, "sweep"); n != 1 {
		t.Fatalf("sweep: %d wills", n)
	}
}

func TestEndGatewayEpoch(t *testing.T) {
	e := newSessEnv(t, 4)
	ctx := context.Background()
	for _, cid := range []string{"a1", "a2", "a3"} {
		e.openWill(cid, false, 100, 5, "gw", 1, false)
	}
	e.openWill("b1", false, 100, 5, "gw", 2, false)
	e.openWill("z0", false, 0, 5, "gw", 1, false) // expiry 0: ends, will at once
	// a3 moved to epoch 2 before epoch 1 died.
	e.openWill("a3", false, 100, 5, "gw", 2, false)
	got := e.db.ConnectedGatewayEpochs()
	if len(got) != 2 || got[0] != (GatewayEpoch{"gw", 1}) || got[1] != (GatewayEpoch{"gw", 2}) {
		t.Fatalf("connected epochs %v", got)
	}
	n, err := e.db.EndGatewayEpoch(ctx, "gw", 1)
	if err != nil || n != 3 {
		t.Fatalf("end epoch: %d, %v", n, err)
	}
	for _, cid := range []string{"a1", "a2"} {
		s, _, ok := e.db.GetSession(cid)
		if !ok || s.Record.Connected || !s.Record.AbnormalDisconnect || s.Record.WillAtUs != e.clock.Now().UnixMicro()+5e6 {
			t.Fatalf("%s: %v", cid, s.GetRecord())
		}
	}
	for _, cid := range []string{"a3", "b1"} {
		if s, _, _ := e.db.GetSession(cid); !s.Record.Connected {
			t.Fatalf("%s of epoch 2 touched: %v", cid, s.Record)
		}
	}
	if n := willCount(t, e.db, "z0"); n != 1 {
		t.Fatalf("z0: %d wills", n)
	}
	e.tick(5 * time.Second)
	for cid, want := range map[string]int{"a1": 1, "a2": 1, "a3": 0, "b1": 0} {
		if n := willCount(t, e.db, cid); n != want {
			t.Fatalf("%s: %d wills, want %d", cid, n, want)
		}
	}
}

// TestWillCrashEveryWrite crashes at every filesystem write from the
// abnormal disconnect through the firing batch, then reopens, runs the timers, and checks that the will is in its stream
// exactly once and retained.
func TestWillCrashEveryWrite(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock(t0)
	base := Options{DataDir: "data", NShards: 2, IdleTickInterval: time.Hour, Now: clock.Now}
	mem := vfs.NewCrashableMem()
	{
		o := base
		o.FS = mem
		e := &sessEnv{t: t, clock: clock, opts: o}
		e.open()
		e.openWill("c", false, 100, 2, "gw", 1, true)
		e.openWill("d", false, 100, 2, "gw", 1, false)
		e.close()
	}
	rng := rand.New(rand.NewPCG(3, 3))
	pristine := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
	var (
		countdown atomic.Int64
		crashFS   atomic.Pointer[vfs.MemFS]
	)
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind.ReadOrWrite() == errorfs.OpIsWrite && countdown.Add(-1) == -1 {
			crashFS.Store(mem.CrashClone(vfs.CrashCloneCfg{}))
		}
		return nil
	})
	for k := int64(0); ; k++ {
		countdown.Store(math.MaxInt64)
		mem = pristine.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
		crashFS.Store(nil)
		clock.Set(t0 + 10e6)
		o := base
		o.FS = errorfs.Wrap(mem, inj)
		e := &sessEnv{t: t, clock: clock, opts: o}
		e.open()
		countdown.Store(k)
		// The same sequence as a gateway's: both connections end (lease
		// death), the wills fire 2 s later, the retained one is applied.
		if _, err := e.db.EndGatewayEpoch(ctx, "gw", 1); err != nil && countdown.Load() >= 0 {
			t.Fatal(err)
		}
		e.tick(2 * time.Second)
		e.close()
		if countdown.Load() >= 0 {
			t.Logf("no crash at write %d: %d crash points checked", k, k)
			return
		}
		o = base
		o.FS = crashFS.Load()
		e = &sessEnv{t: t, clock: clock, opts: o}
		e.open()
		_, _ = e.db.EndGatewayEpoch(ctx, "gw", 1) // the connections may have ended before the crash
		e.tick(2 * time.Second)
		for _, cid := range []string{"c", "d"} {
			if n := willCount(t, e.db, cid); n != 1 {
				t.Fatalf("k=%d: %s: %d wills after the crash, want 1", k, cid, n)
			}
		}
		if getRetained(t, e.db, "will/c") == nil {
			t.Fatalf("k=%d: the retained will is not there", k)
		}
		e.close()
	}
}
