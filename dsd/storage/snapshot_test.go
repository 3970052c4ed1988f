package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// dumpShard lists every key of a shard as key=value lines.
func dumpShard(t *testing.T, db *DB, shard int) string {
	t.Helper()
	var buf bytes.Buffer
	lo, _ := shardBounds(shard)
	if err := db.scan(lo, func(k, v []byte) error { fmt.Fprintf(&buf, "%s=%x\n", prettyKey(k), v); return nil }); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// snapshotChunks reads a shard snapshot of db as chunks of about max bytes.
func snapshotChunks(t *testing.T, db *DB, shard, max int) (applied uint64, chunks [][]byte) {
	t.Helper()
	snap, err := db.OpenShardSnapshot(shard)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := snap.Close(); err != nil {
			t.Error(err)
		}
	}()
	for {
		c, last, err := snap.NextChunk(nil, max)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
		if last {
			return snap.Applied(), chunks
		}
	}
}

// feed returns a next func over chunks; at chunk failAt (if >= 0) it calls
// before and fails.
func feed(chunks [][]byte, failAt int, before func()) func() ([]byte, error) {
	i := 0
	return func() ([]byte, error) {
		if i == failAt {
			before()
			return nil, errors.New("link lost")
		}
		if i == len(chunks) {
			return nil, io.EOF
		}
		i++
		return chunks[i-1], nil
	}
}

// leaderWithState is a replicated shard 0 led by the returned DB, with
// messages in two generations, producers, sessions and a will, its entries
// applied up to the returned index; more stores n more.
func leaderWithState(t *testing.T) (leader *DB, log *fakeLog, index uint64) {
	t.Helper()
	leader = openReplica(t, 2, newFakeClock(1_000_000))
	log = newFakeLog()
	if err := leader.SetReplicator(0, &replica{log: log, leader: true}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	pumped := log.pump(t, 0, []*DB{leader}, stop)
	ctx := context.Background()
	store := func(cid string, seq uint64) {
		t.Helper()
		msgs := []*storagev1.Message{msg("t/"+cid+"/a", fmt.Sprint(seq)), msg("t/"+cid+"/b", fmt.Sprint(seq))}
		if _, err := leader.Store(ctx, cid, msgs, &Producer{ClientID: cid, Epoch: 1, FirstSeq: 2*seq - 1}); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= 30; seq++ {
		store("c1", seq)
		store("c2", seq)
	}
	if _, err := leader.AddGeneration(0); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(31); seq <= 40; seq++ {
		store("c1", seq)
	}
	will := &storagev1.Will{Message: &storagev1.Message{Topic: "wills/s1", Payload: []byte("gone"), Qos: 1}, DelayIntervalS: 3600}
	open, err := leader.OpenSession(ctx, OpenSessionRequest{ClientID: "s1", ProtocolVersion: 5, ExpiryIntervalS: 3600, Will: will, GatewayID: "gw", GatewayEpoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.CommitSession(ctx, subCommit("s1", open.Guard, 1, 2, "t/#")); err != nil {
		t.Fatal(err)
	}
	close(stop)
	index = <-pumped
	waitFor(t, "the leader applied", func() bool { n, _ := leader.ReplicatedApplied(0); return n == index })
	return leader, log, index
}

// TestShardSnapshot: a replica with none of a shard's state installs the
// leader's snapshot, sent in many small chunks, and then holds the same
// bytes as the leader (every key of the shard), applies the entries after
// the snapshot's index as the leader does (its state was reloaded), and
// keeps the other shard as it was.
func TestShardSnapshot(t *testing.T) {
	leader, log, index := leaderWithState(t)
	follower := openReplica(t, 2, newFakeClock(7_000_000_000))
	if err := follower.SetReplicator(0, &replica{log: log}); err != nil {
		t.Fatal(err)
	}
	other := dumpShard(t, follower, 1)
	applied, chunks := snapshotChunks(t, leader, 0, 128)
	if applied != index || len(chunks) < 5 {
		t.Fatalf("snapshot at %d in %d chunks, want %d in many", applied, len(chunks), index)
	}
	var size int
	for _, c := range chunks {
		size += len(c)
	}
	var recorded uint64
	got, err := follower.InstallShardSnapshot(0, feed(chunks, -1, nil), func(a uint64) error {
		if ok, _ := follower.InstallInterrupted(0); !ok {
			t.Error("the install is not marked while the raft snapshot is recorded")
		}
		recorded = a
		return nil
	})
	if err != nil || got != index || recorded != index {
		t.Fatalf("install: %d %d %v, want %d", got, recorded, err, index)
	}
	t.Logf("snapshot of %d entries: %d bytes in %d chunks", index, size, len(chunks))
	if ok, _ := follower.InstallInterrupted(0); ok {
		t.Fatal("the install is still marked")
	}
	if a, b := dumpShard(t, leader, 0), dumpShard(t, follower, 0); a != b {
		t.Fatalf("shard 0 differs after the install:\nleader:\n%s\nfollower:\n%s", a, b)
	}
	if got := dumpShard(t, follower, 1); got != other {
		t.Fatalf("shard 1 changed:\n%s\nwas:\n%s", got, other)
	}
	// The entries after the snapshot apply alike: the state was reloaded
	// (producer sequences, trie, clock, sessions).
	stop := make(chan struct{})
	pumped := log.pumpAfter(t, 0, []*DB{leader, follower}, stop, index)
	ctx := context.Background()
	for seq := uint64(40); seq <= 45; seq++ {
		// 40 is a duplicate (stored before the snapshot) on both.
		res, err := leader.Store(ctx, "c1", []*storagev1.Message{msg("t/c1/a", fmt.Sprint(seq)), msg("t/new", "x")}, &Producer{ClientID: "c1", Epoch: 1, FirstSeq: 2*seq - 1})
		if err != nil || res.Duplicate != (seq == 40) {
			t.Fatalf("store %d: %+v %v", seq, res, err)
		}
	}
	close(stop)
	last := <-pumped
	waitFor(t, "both applied", func() bool {
		a, _ := leader.ReplicatedApplied(0)
		b, _ := follower.ReplicatedApplied(0)
		return a == last && b == last
	})
	if a, b := dumpShard(t, leader, 0), dumpShard(t, follower, 0); a != b {
		t.Fatalf("shard 0 differs after entries past the snapshot:\nleader:\n%s\nfollower:\n%s", a, b)
	}
}

// TestShardSnapshotInstallCrash: a crash in the middle of an install (after
// some chunks, or after the state is written but before the install is
// complete) leaves the shard marked; the next Open resets it to a new
// shard's records and reports the interruption, and a new install then
// completes it, byte for byte.
func TestShardSnapshotInstallCrash(t *testing.T) {
	leader, _, index := leaderWithState(t)
	_, chunks := snapshotChunks(t, leader, 0, 512)
	for _, at := range []string{"chunks", "durable"} {
		t.Run(at, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			opts := Options{NShards: 2, DataDir: "data", FS: mem, IdleTickInterval: time.Hour, Now: newFakeClock(5_000_000).Now}
			db, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			other := dumpShard(t, db, 1)
			var crashed *vfs.MemFS
			crash := func() { crashed = mem.CrashClone(vfs.CrashCloneCfg{}) }
			failAt, durable := len(chunks)/2, func(uint64) error { return nil }
			if at == "durable" {
				failAt, durable = -1, func(uint64) error { crash(); return errors.New("raft log lost") }
			}
			if _, err := db.InstallShardSnapshot(0, feed(chunks, failAt, crash), durable); err == nil {
				t.Fatal("an install that failed succeeded")
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			opts.FS = crashed
			db, err = Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = db.Close() }()
			if ok, err := db.InstallInterrupted(0); !ok || err != nil {
				t.Fatalf("interrupted: %v %v", ok, err)
			}
			if n, _ := db.ReplicatedApplied(0); n != 0 {
				t.Fatalf("a reset shard has applied index %d", n)
			}
			if got := dumpShard(t, db, 1); got != other {
				t.Fatalf("shard 1 changed:\n%s\nwas:\n%s", got, other)
			}
			if got, err := db.InstallShardSnapshot(0, feed(chunks, -1, nil), func(uint64) error { return nil }); err != nil || got != index {
				t.Fatalf("install again: %d %v", got, err)
			}
			if ok, _ := db.InstallInterrupted(0); ok {
				t.Fatal("still marked")
			}
			if a, b := dumpShard(t, leader, 0), dumpShard(t, db, 0); a != b {
				t.Fatalf("shard 0 differs:\nleader:\n%s\nreplica:\n%s", a, b)
			}
		})
	}
}

// TestShardSnapshotRefusesForeignKeys: a chunk naming a key of another
// shard, or a malformed chunk, fails the install before it completes.
func TestShardSnapshotRefusesForeignKeys(t *testing.T) {
	db := openReplica(t, 2, newFakeClock(1_000_000))
	for name, chunk := range map[string][]byte{
		"other shard": AppendSnapshotPair(nil, shardClockKey(1), []byte{1}),
		"site key":    AppendSnapshotPair(nil, siteMetaKey(), []byte{1}),
		"marker":      AppendSnapshotPair(nil, shardInstallingKey(0), []byte{1}),
		"truncated":   AppendSnapshotPair(nil, shardClockKey(0), []byte{1, 2, 3})[:5],
		"no applied":  AppendSnapshotPair(nil, shardClockKey(0), []byte{1}),
	} {
		if _, err := db.InstallShardSnapshot(0, feed([][]byte{chunk}, -1, nil), func(uint64) error { return nil }); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeSnapshotChunk(f *testing.F) {
	f.Add(AppendSnapshotPair(AppendSnapshotPair(nil, []byte("k"), []byte("v")), []byte{0, 1}, nil))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})
	f.Add([]byte{5, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var re []byte
		err := DecodeSnapshotChunk(b, func(k, v []byte) error {
			re = AppendSnapshotPair(re, k, v)
			return nil
		})
		if err == nil && !bytes.Equal(re, b) {
			// Non-minimal varints decode too; what they decode to must
			// re-encode to something that decodes the same.
			var again []byte
			if err := DecodeSnapshotChunk(re, func(k, v []byte) error { again = AppendSnapshotPair(again, k, v); return nil }); err != nil || !bytes.Equal(again, re) {
				t.Fatalf("%x decodes to %x, which does not round-trip: %v", b, re, err)
			}
		}
	})
}

// TestMarkReplicatedAndReset: a local shard marked replicated at an index
// serves a snapshot at it; a shard reset holds a new shard's records only
// (a replica removed from the site), and takes a snapshot's install again.
func TestMarkReplicatedAndReset(t *testing.T) {
	leader, _, index := leaderWithState(t)
	db := openReplica(t, 2, newFakeClock(1_000_000))
	if _, err := db.Store(context.Background(), "c", []*storagev1.Message{msg("a/b", "x")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkReplicated(0, 7); err != nil {
		t.Fatal(err)
	}
	if applied, _ := snapshotChunks(t, db, 0, 1<<20); applied != 7 {
		t.Fatalf("a shard marked replicated at 7 serves a snapshot at %d", applied)
	}
	blank := openReplica(t, 2, newFakeClock(1_000_000))
	_, chunks := snapshotChunks(t, leader, 0, 1<<20)
	if _, err := db.InstallShardSnapshot(0, feed(chunks, -1, nil), func(uint64) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.ResetShard(0); err != nil {
		t.Fatal(err)
	}
	if a, b := dumpShard(t, blank, 0), dumpShard(t, db, 0); a != b {
		t.Fatalf("a reset shard differs from a new one:\n%s\nnew:\n%s", b, a)
	}
	if n, _ := db.ReplicatedApplied(0); n != 0 {
		t.Fatalf("a reset shard has applied index %d", n)
	}
	if got, err := db.InstallShardSnapshot(0, feed(chunks, -1, nil), func(uint64) error { return nil }); err != nil || got != index {
		t.Fatalf("install after the reset: %d %v", got, err)
	}
}
