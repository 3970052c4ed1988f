package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// fakeSpace is an injectable free-space source (Options.FreeSpace).
type fakeSpace struct{ free atomic.Uint64 }

func (f *fakeSpace) read(string) (uint64, error) { return f.free.Load(), nil }

const testWatermark = 100 << 20

// diskOpts are options on an in-memory FS with a fake free-space source
// whose readings the test takes itself (db.space.check), so no timing is
// involved.
func diskOpts(fs vfs.FS, space *fakeSpace) Options {
	return Options{DataDir: "data", FS: fs, NShards: 2, IdleTickInterval: time.Hour,
		MinFreeBytes: testWatermark, DiskCheckInterval: time.Hour, FreeSpace: space.read}
}

// TestDiskWatermark: under the watermark Store, OpenSession and
// CommitSession answer ErrDiskFull while reads go on; writes resume once
// free space is back above the resume mark (not before: hysteresis),
// without a reopen, and nothing acknowledged is lost.
func TestDiskWatermark(t *testing.T) {
	space := &fakeSpace{}
	space.free.Store(1 << 30)
	mem := vfs.NewMem()
	db := must(Open(diskOpts(mem, space)))
	defer func() { _ = db.Close() }()
	ctx := context.Background()
	acked := 0
	store := func(payload string) error {
		_, err := db.Store(ctx, "pub", []*storagev1.Message{msg("t/a", payload)}, nil)
		if err == nil {
			acked++
		}
		return err
	}
	for i := range 5 {
		if err := store(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	open := must(db.OpenSession(ctx, OpenSessionRequest{ClientID: "sub", ExpiryIntervalS: 3600, GatewayID: "g", GatewayEpoch: 1}))
	if st := db.DiskStatus(); st.Watermark || st.FreeBytes != 1<<30 || st.MinFreeBytes != testWatermark {
		t.Fatalf("status before: %+v", st)
	}

	space.free.Store(50 << 20)
	db.space.check()
	err := store("refused")
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("store under the watermark: %v, want ErrDiskFull", err)
	}
	if want := fmt.Sprintf("dsd: disk full: %d bytes free under the watermark %d on data", 50<<20, testWatermark); err.Error() != want {
		t.Fatalf("error text %q, want %q", err, want)
	}
	if _, err := db.OpenSession(ctx, OpenSessionRequest{ClientID: "other", GatewayID: "g", GatewayEpoch: 1}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("open session under the watermark: %v", err)
	}
	if err := db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "sub", Guard: open.Guard}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("commit session under the watermark: %v", err)
	}
	if err := db.Ready(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("ready under the watermark: %v", err)
	}
	asyncErr := make(chan error, 1)
	db.StoreAsync("pub", []IngestMessage{IngestMessageOf(msg("t/a", "async"))}, nil, func(_ StoreResult, err error) { asyncErr <- err })
	if err := <-asyncErr; !errors.Is(err, ErrDiskFull) {
		t.Fatalf("ingest store under the watermark: %v", err)
	}
	// Reads go on.
	if got := readAll(t, db, "t/#", 0); len(got) != acked {
		t.Fatalf("read %d messages under the watermark, want %d", len(got), acked)
	}
	if _, _, ok := db.GetSession("sub"); !ok {
		t.Fatal("session not readable under the watermark")
	}
	if wm := db.Watermarks(); len(wm) != 2 {
		t.Fatalf("watermarks: %v", wm)
	}
	st := db.DiskStatus()
	if !st.Watermark || st.WriteFailed || st.RefusedWatermark != 4 || st.FreeBytes != 50<<20 {
		t.Fatalf("status under the watermark: %+v", st)
	}

	// Above the watermark but under the resume mark: still refused.
	space.free.Store(testWatermark + 1)
	db.space.check()
	if err := store("still refused"); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("store under the resume mark: %v", err)
	}
	space.free.Store(testWatermark + testWatermark/4)
	db.space.check()
	for i := range 3 {
		if err := store(fmt.Sprint("after ", i)); err != nil {
			t.Fatalf("store after space returned: %v", err)
		}
	}
	if err := db.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := db.CommitSession(ctx, &storagev1.SessionCommit{ClientId: "sub", Guard: open.Guard}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = must(Open(diskOpts(mem, space)))
	if got := readAll(t, db, "t/#", 0); len(got) != acked {
		t.Fatalf("after reopen: %d messages, want %d", len(got), acked)
	}
}

// TestDiskFullStalledWriteGivesUp: a Store waiting for its commit answers
// ErrDiskFull as soon as the disk fills, rather than waiting for its ctx
// (Pebble can stall a commit for good on a full disk).
func TestDiskFullStalledWriteGivesUp(t *testing.T) {
	space := &fakeSpace{}
	space.free.Store(1 << 30)
	db := must(Open(diskOpts(vfs.NewMem(), space)))
	defer func() { _ = db.Close() }()
	// Hold the shard writer inside a command, as Pebble holds a commit it
	// stalls.
	s := db.shards[db.ShardOf("pub")]
	entered, hold := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		_, err := s.do(context.Background(), &request{kind: reqSession, mkCmd: func(now int64) command {
			close(entered)
			<-hold
			return cmdSessionGC{nowUs: now}
		}})
		held <- err
	}()
	<-entered
	errc := make(chan error, 1)
	go func() {
		// A Store past its admission check.
		_, err := s.doWrite(context.Background(), &request{kind: reqStore, items: 1, bytes: 1,
			store: &storeReq{clientID: "pub", msgs: []IngestMessage{IngestMessageOf(msg("t", "x"))}}})
		errc <- err
	}()
	space.free.Store(1)
	db.space.check()
	if err := <-errc; !errors.Is(err, ErrDiskFull) {
		t.Fatalf("waiting store: %v, want ErrDiskFull", err)
	}
	close(hold)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// TestDiskFullENOSPC: a write that meets ENOSPC in Pebble raises the flag
// at once (vfs.OnDiskFull) and is retried; later writes are refused until
// a reading shows free space again. A sync that meets ENOSPC is not
// retried: fail-stop, with an error that says the disk is full.
func TestDiskFullENOSPC(t *testing.T) {
	space := &fakeSpace{}
	space.free.Store(1 << 30)
	var writeFails, syncFails atomic.Int32
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite:
			if writeFails.Add(-1) >= 0 {
				return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
			}
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if syncFails.Load() > 0 {
				return &os.PathError{Op: "sync", Path: op.Path, Err: syscall.ENOSPC}
			}
		}
		return nil
	})
	db := must(Open(diskOpts(errorfs.Wrap(vfs.NewMem(), inj), space)))
	ctx := context.Background()
	must(db.Store(ctx, "pub", []*storagev1.Message{msg("t", "1")}, nil))

	// One failed WAL write: retried into the freed room and committed,
	// though the Store may already have been answered ErrDiskFull (a
	// waiter gives up when the disk fills, doWrite). The ENOSPC pokes the
	// watcher, whose reading must then say what the disk would: full.
	space.free.Store(1 << 20)
	writeFails.Store(1)
	if _, err := db.Store(ctx, "pub", []*storagev1.Message{msg("t", "2")}, nil); err != nil && !errors.Is(err, ErrDiskFull) {
		t.Fatalf("store whose WAL write was retried: %v", err)
	}
	// The Store may have given up before Pebble's retry of the write.
	waitFor(t, "the ENOSPC and Pebble's retry of the write", func() bool { return writeFails.Load() < 0 })
	if _, err := db.Store(ctx, "pub", []*storagev1.Message{msg("t", "3")}, nil); !errors.Is(err, ErrDiskFull) || errors.Is(err, ErrFailStop) {
		t.Fatalf("store after an ENOSPC: %v, want ErrDiskFull (not fail-stop)", err)
	}
	space.free.Store(1 << 30)
	db.space.check() // the ENOSPC is over
	must(db.Store(ctx, "pub", []*storagev1.Message{msg("t", "4")}, nil))

	// A failed WAL sync: fail-stop, reported as a full disk.
	syncFails.Store(1)
	if _, err := db.Store(ctx, "pub", []*storagev1.Message{msg("t", "5")}, nil); err == nil {
		t.Fatal("store acked after a failed sync")
	}
	syncFails.Store(0)
	db.space.check()
	_, err := db.Store(ctx, "pub", []*storagev1.Message{msg("t", "6")}, nil)
	if !errors.Is(err, ErrFailStop) || !errors.Is(err, ErrDiskFull) {
		t.Fatalf("store after a failed sync: %v, want ErrFailStop and ErrDiskFull", err)
	}
	if st := db.DiskStatus(); !st.WriteFailed || st.RefusedWriteFailed != 1 {
		t.Fatalf("status: %+v", st)
	}
	// 1, 2 (committed by the retry) and 4; not 5, whose sync failed
	// (the readable clock did not pass it).
	var got []string
	for _, m := range readAll(t, db, "t", 0) {
		got = append(got, string(m.Payload))
	}
	if strings.Join(got, ",") != "1,2,4" {
		t.Fatalf("read %v after fail-stop, want [1 2 4]", got)
	}
	_ = db.Close() // Pebble may report the sticky error again
}

// TestPebbleFatalDiskFull: a Fatalf of Pebble about a full disk fail-stops
// the engine and never returns to Pebble; Close then leaves Pebble
// unclosed. Any other Fatalf panics.
func TestPebbleFatalDiskFull(t *testing.T) {
	db := must(Open(Options{DataDir: "data", FS: vfs.NewMem(), NShards: 1, IdleTickInterval: time.Hour}))
	db.fatalPark = make(chan struct{})
	must(db.Store(context.Background(), "pub", []*storagev1.Message{msg("t", "1")}, nil))
	logger := pebbleLogger{l: db.log, db: db}
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		logger.Fatalf("%s", fmt.Errorf("MANIFEST sync failed: %w", &os.PathError{Op: "sync", Path: "MANIFEST-000001", Err: syscall.ENOSPC}))
	}()
	waitFor(t, "fail-stop", func() bool { return db.failErr() != nil })
	select {
	case <-returned:
		t.Fatal("Fatalf returned to pebble")
	default:
	}
	if _, err := db.Store(context.Background(), "pub", []*storagev1.Message{msg("t", "2")}, nil); !errors.Is(err, ErrDiskFull) || !errors.Is(err, ErrFailStop) {
		t.Fatalf("store after a disk-full fatal: %v", err)
	}
	if got := readAll(t, db, "t", 0); len(got) != 1 {
		t.Fatalf("read %d messages, want 1", len(got))
	}
	if err := db.Close(); !errors.Is(err, ErrLeftUnclosed) {
		t.Fatalf("close: %v, want ErrLeftUnclosed", err)
	}
	// Test only: release the parked goroutine and close what Close left.
	close(db.fatalPark)
	<-returned
	_ = db.pdb.Close()
	_ = db.lock.Close()

	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "invariant") {
			t.Fatalf("a non-disk Fatalf did not panic: %v", r)
		}
	}()
	pebbleLogger{l: db.log, db: db}.Fatalf("invariant broken: %v", errors.New("boom"))
}

// TestEmergencyBallast: Open puts the ballast in place on the OS
// filesystem; an ENOSPC deletes it and raises the flag; once a reading
// shows room for it above the resume mark, the flag drops and the ballast
// is back.
func TestEmergencyBallast(t *testing.T) {
	space := &fakeSpace{}
	space.free.Store(1 << 30)
	dir := t.TempDir()
	db := must(Open(Options{DataDir: dir, NShards: 1, IdleTickInterval: time.Hour, MinFreeBytes: testWatermark,
		DiskCheckInterval: time.Hour, FreeSpace: space.read, EmergencyBallastBytes: 1 << 20}))
	defer func() { _ = db.Close() }()
	path := dir + "/" + ballastName
	if fi, err := os.Stat(path); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("ballast after Open: %v, %v", fi, err)
	}
	space.free.Store(1 << 20) // what a reading after the ENOSPC would say
	db.space.onDiskFull()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("ballast after ENOSPC: %v", err)
	}
	if _, err := db.Store(context.Background(), "pub", []*storagev1.Message{msg("t", "1")}, nil); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("store after ENOSPC: %v", err)
	}
	space.free.Store(1 << 30)
	db.space.check()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("ballast after space returned: %v", err)
	}
	must(db.Store(context.Background(), "pub", []*storagev1.Message{msg("t", "2")}, nil))
}
