package storage

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/protobuf/encoding/prototext"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// sessionOps is the deterministic workload of the session crash test: each
// op is one session command (or a Store with QoS 2 ids) that depends on
// the guards earlier opens returned.
func sessionOps() []func(ctx context.Context, db *DB, g map[string]uint64) error {
	open := func(cid string, clean bool, expiry uint32, gw string) func(context.Context, *DB, map[string]uint64) error {
		return func(ctx context.Context, db *DB, g map[string]uint64) error {
			res, err := db.OpenSession(ctx, OpenSessionRequest{ClientID: cid, Username: "u", ProtocolVersion: 5, CleanStart: clean,
				ExpiryIntervalS: expiry, GatewayID: gw, GatewayEpoch: 1,
				Will: &storagev1.Will{Message: msg("will/"+cid, "bye"), DelayIntervalS: 3}})
			if err == nil {
				g["old:"+cid], g[cid] = g[cid], res.Guard
			}
			return err
		}
	}
	commit := func(cid string, build func(guard uint64) *storagev1.SessionCommit) func(context.Context, *DB, map[string]uint64) error {
		return func(ctx context.Context, db *DB, g map[string]uint64) error {
			return db.CommitSession(ctx, build(g[cid]))
		}
	}
	q2 := func(cid string, seq uint64, id uint16) func(context.Context, *DB, map[string]uint64) error {
		return func(ctx context.Context, db *DB, g map[string]uint64) error {
			m := msg("q2/"+cid, fmt.Sprint(seq))
			m.Qos = 2
			_, err := db.Store(ctx, cid, []*storagev1.Message{m}, &Producer{ClientID: cid, Epoch: g[cid], FirstSeq: seq, QoS2PacketIDs: []uint16{id}})
			return err
		}
	}
	key := &storagev1.StreamKey{SubscriptionId: 1, Shard: 0, Generation: 1, StaticIndex: []byte{0, 0, 0, 2}}
	return []func(context.Context, *DB, map[string]uint64) error{
		open("c0", false, 100, "gwA"),
		open("c1", false, 100, "gwA"),
		commit("c0", func(g uint64) *storagev1.SessionCommit {
			c := subCommit("c0", g, 1, 2, "a/#")
			c.PutStreams = []*storagev1.StreamRing{{Key: key, Batches: []*storagev1.BatchRecord{{ItBegin: []byte{1}, Count: 2, SubState: 2}}}}
			return c
		}),
		q2("c0", 1, 5),
		q2("c0", 2, 5),
		open("c0", false, 100, "gwB"),
		func(ctx context.Context, db *DB, g map[string]uint64) error {
			return db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "c0", Guard: g["old:c0"], LastId: u64(9)}) // stale
		},
		func(ctx context.Context, db *DB, g map[string]uint64) error {
			_, err := db.Release(ctx, "c0", g["c0"], 5)
			return err
		},
		commit("c1", func(g uint64) *storagev1.SessionCommit {
			return &storagev1.SessionCommit{ClientId: "c1", Guard: g, Seqnos: &storagev1.SeqnoTracks{NextQos1: 4, CommittedQos1: 2}, MissedMessages: u64(1)}
		}),
		func(ctx context.Context, db *DB, g map[string]uint64) error {
			_, err := db.Disconnect(ctx, DisconnectRequest{ClientID: "c1", Guard: g["c1"], Abnormal: true, ExpiryIntervalS: u32(200)})
			return err
		},
		open("c2", false, 0, "gwA"),
		func(ctx context.Context, db *DB, g map[string]uint64) error {
			_, err := db.Disconnect(ctx, DisconnectRequest{ClientID: "c2", Guard: g["c2"]})
			return err
		},
		q2("c0", 1, 6),
		commit("c0", func(g uint64) *storagev1.SessionCommit {
			c := subCommit("c0", g, 1, 3, "a/#")
			c.DeleteStreams = []*storagev1.StreamKey{key}
			return c
		}),
		func(ctx context.Context, db *DB, g map[string]uint64) error {
			_, err := db.DeleteSession(ctx, "c0", u64(g["c0"]))
			return err
		},
		open("c0", true, 100, "gwC"),
		open("c3", false, 1, "gwA"),
		func(ctx context.Context, db *DB, g map[string]uint64) error {
			_, err := db.Disconnect(ctx, DisconnectRequest{ClientID: "c3", Guard: g["c3"]})
			return err
		},
		func(ctx context.Context, db *DB, g map[string]uint64) error {
			_, err := db.SweepSessions(ctx) // c3 expired: ops run 1 s apart
			return err
		},
		open("c1", false, 100, "gwB"),
	}
}

// sessionDump renders every session, producer state and guard counter of
// the DB, for comparing a recovered DB with the reference run.
func sessionDump(db *DB) string {
	var b strings.Builder
	for _, s := range db.shards {
		s.mu.RLock()
		st := s.mu.st
		fmt.Fprintf(&b, "shard %d guard counter %d\n", st.shard, st.guardCounter)
		for _, cid := range sortedKeys(st.sessions) {
			fmt.Fprintf(&b, "session %q: %s\n", cid, prototext.Format(snapshotSession(st, cid, st.sessions[cid])))
		}
		for _, cid := range sortedKeys(st.producers) {
			fmt.Fprintf(&b, "producer %q: %s\n", cid, prototext.Format(st.producers[cid]))
		}
		s.mu.RUnlock()
	}
	return b.String()
}

// TestSessionCrashEveryWrite crashes the engine at every filesystem write
// of the session workload and checks that the recovered session state is
// exactly the state after the acked commands, or after one more (the
// command in flight at the crash), as recorded by an uncrashed reference
// run.
func TestSessionCrashEveryWrite(t *testing.T) {
	ctx := context.Background()
	ops := sessionOps()
	clock := newFakeClock(t0)
	base := Options{DataDir: "data", NShards: 2, IdleTickInterval: time.Hour, Now: clock.Now}
	mem := vfs.NewCrashableMem()
	{
		o := base
		o.FS = mem
		db := must(Open(o))
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(2, 2))
	pristine := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})

	// The reference run: the dump after each op, and which ops fail.
	var ref []string
	var refErr []bool
	{
		clock.Set(t0)
		o := base
		o.FS = pristine.CrashClone(vfs.CrashCloneCfg{})
		db := must(Open(o))
		guards := map[string]uint64{}
		ref = append(ref, sessionDump(db))
		for _, op := range ops {
			clock.Advance(time.Second)
			err := op(ctx, db, guards)
			refErr = append(refErr, err != nil)
			ref = append(ref, sessionDump(db))
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

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
	triggered := func() bool { return countdown.Load() < 0 }
	for k := int64(0); ; k++ {
		countdown.Store(math.MaxInt64)
		mem = pristine.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
		crashFS.Store(nil)
		clock.Set(t0)
		o := base
		o.FS = errorfs.Wrap(mem, inj)
		db := must(Open(o))
		countdown.Store(k)
		guards := map[string]uint64{}
		acked := 0
		for i, op := range ops {
			clock.Advance(time.Second)
			err := op(ctx, db, guards)
			if triggered() {
				break
			}
			if (err != nil) != refErr[i] {
				t.Fatalf("k=%d: op %d: %v (reference failed: %v)", k, i, err, refErr[i])
			}
			acked = i + 1
		}
		if err := db.Close(); err != nil {
			t.Fatalf("k=%d: close: %v", k, err)
		}
		if !triggered() {
			t.Logf("no crash at write %d: %d crash points checked", k, k)
			return
		}
		o = base
		o.FS = crashFS.Load()
		db, err := Open(o)
		if err != nil {
			t.Fatalf("k=%d: reopen: %v", k, err)
		}
		got := sessionDump(db)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if got != ref[acked] && (acked == len(ops) || got != ref[acked+1]) {
			t.Fatalf("k=%d: after %d acked ops the state is neither the reference after %d nor after %d:\n%s\nwant:\n%s", k, acked, acked, acked+1, got, ref[acked])
		}
	}
}
