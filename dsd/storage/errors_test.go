package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func TestLock(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		_, err := Open(e.opts)
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second open: %v, want ErrLocked", err)
		}
		e.close()
		e.open() // released by Close
	})
}

func TestNShardsMismatch(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		id := e.db.SiteID()
		e.close()
		o := e.opts
		o.NShards++
		if _, err := Open(o); !errors.Is(err, ErrNShardsMismatch) {
			t.Fatalf("open with n_shards+1: %v", err)
		}
		e.open()
		if e.db.SiteID() != id || len(id) != 16 {
			t.Fatalf("site id %q then %q", id, e.db.SiteID())
		}
	}, allVariants[0], allVariants[2])
}

func TestValidation(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		big := &storagev1.Message{Topic: "t", Payload: make([]byte, 2<<20)}
		cases := []struct {
			msgs []*storagev1.Message
			p    *Producer
			want error
		}{
			{nil, nil, ErrInvalidArgument},
			{[]*storagev1.Message{msg("a/+", "x")}, nil, ErrInvalidTopic},
			{[]*storagev1.Message{msg("", "x")}, nil, ErrInvalidTopic},
			{[]*storagev1.Message{big}, nil, ErrMessageTooLarge},
			{[]*storagev1.Message{{Topic: "t", Qos: 3}}, nil, ErrInvalidArgument},
			{[]*storagev1.Message{msg("t", "x")}, &Producer{ClientID: "other", FirstSeq: 1}, ErrInvalidArgument},
			{[]*storagev1.Message{msg("t", "x")}, &Producer{ClientID: "c", FirstSeq: 0}, ErrInvalidArgument},
		}
		for i, c := range cases {
			_, err := e.db.Store(ctx, "c", c.msgs, c.p)
			if !errors.Is(err, c.want) || !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("case %d: %v, want %v", i, err, c.want)
			}
		}
		if _, err := e.db.GetStreams("a/#/b", 0, -1); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("bad filter: %v", err)
		}
		if _, err := e.db.GetStreams("#", 0, 99); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("bad shard: %v", err)
		}
		for _, it := range [][]byte{nil, {9}, {1, 0xff, 0xff}, {1, 8, 99}} {
			if _, _, _, err := e.db.Next(ctx, it, Limit{Max: 1}); !errors.Is(err, ErrInvalidIterator) {
				t.Errorf("iterator %x: %v", it, err)
			}
		}
	}, allVariants[1])
}

func TestNextGenerationDropped(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		res := must(e.db.Store(ctx, "c", []*storagev1.Message{msg("a", "1")}, nil))
		streams := must(e.db.GetStreams("a", 0, res.Shard))
		it := must(e.db.MakeIterator(streams[0], "a", 0))
		must(e.db.AddGeneration(res.Shard))
		es, next, eos, err := e.db.Next(ctx, it, Limit{Max: 10})
		if err != nil || len(es) != 1 || !eos {
			t.Fatalf("next: %d entries, eos %v, %v", len(es), eos, err)
		}
		if _, _, eos, _ := e.db.Next(ctx, next, Limit{Max: 10}); !eos {
			t.Fatal("exhausted stream of a non-current generation: no end_of_stream")
		}
		if err := e.db.DropGeneration(res.Shard, 1); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := e.db.Next(ctx, it, Limit{Max: 10}); !errors.Is(err, ErrGenerationDropped) {
			t.Fatalf("next on dropped generation: %v", err)
		}
		if _, err := e.db.MakeIterator(streams[0], "a", 0); !errors.Is(err, ErrGenerationDropped) {
			t.Fatalf("make iterator on dropped generation: %v", err)
		}
	})
}

// TestLimits checks Count and End: replaying up to an end iterator gives
// the same messages as the first read.
func TestLimits(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var msgs []*storagev1.Message
		for i := 0; i < 10; i++ {
			msgs = append(msgs, msg("x/y", string(rune('a'+i))))
		}
		must(e.db.Store(ctx, "c", msgs, nil))
		s := must(e.db.GetStreams("x/y", 0, -1))[0]
		it := must(e.db.MakeIterator(s, "x/y", 0))
		first, end, _, err := e.db.Next(ctx, it, Limit{Max: 4})
		if err != nil || len(first) != 4 {
			t.Fatalf("first: %d, %v", len(first), err)
		}
		replay, _, _, err := e.db.Next(ctx, it, Limit{End: end})
		if err != nil || len(replay) != 4 || string(replay[3].Message.Payload) != "d" {
			t.Fatalf("replay to end: %d, %v", len(replay), err)
		}
		exact, _, _, err := e.db.Next(ctx, it, Limit{Count: 3})
		if err != nil || len(exact) != 3 || string(exact[2].Message.Payload) != "c" {
			t.Fatalf("count: %d, %v", len(exact), err)
		}
		if _, _, _, err := e.db.Next(ctx, it, Limit{}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("no limit: %v", err)
		}
	}, allVariants[0])
}

// TestCorruptionNamed flips bytes in the MANIFEST: Open must fail with
// ErrCorruption and name the file, never start silently.
func TestCorruptionNamed(t *testing.T) {
	for _, target := range []string{"MANIFEST"} {
		t.Run(target, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{DataDir: dir, NShards: 2, IdleTickInterval: time.Hour}
			db := must(Open(o))
			must(db.Store(context.Background(), "c", []*storagev1.Message{msg("a", "1")}, nil))
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			matches, _ := filepath.Glob(filepath.Join(dir, target+"-*"))
			if len(matches) == 0 {
				t.Fatalf("no %s file", target)
			}
			path := matches[len(matches)-1]
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := len(b) / 3; i < len(b)/3+8 && i < len(b); i++ {
				b[i] ^= 0x5a
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Open(o)
			if err == nil {
				t.Fatal("open of a corrupted data dir succeeded")
			}
			if !strings.Contains(err.Error(), filepath.Base(path)) {
				t.Fatalf("error does not name %s: %v", filepath.Base(path), err)
			}
			t.Logf("%v", err)
			if target == "MANIFEST" && !errors.Is(err, ErrCorruption) {
				t.Fatalf("not ErrCorruption: %v", err)
			}
		})
	}
}

// TestFailStop: after a failed fsync every later Store fails with
// ErrFailStop, until the DB is reopened.
func TestFailStop(t *testing.T) {
	mem := vfs.NewMem()
	var fail atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if fail.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo || op.Kind == errorfs.OpFileWrite) {
			return errors.New("injected EIO")
		}
		return nil
	})
	o := Options{DataDir: "data", FS: errorfs.Wrap(mem, inj), NShards: 1, IdleTickInterval: time.Hour, Logger: nil}
	db := must(Open(o))
	ctx := context.Background()
	must(db.Store(ctx, "c", []*storagev1.Message{msg("a", "1")}, nil))
	fail.Store(true)
	if _, err := db.Store(ctx, "c", []*storagev1.Message{msg("a", "2")}, nil); err == nil {
		t.Fatal("store acked after a failed fsync")
	}
	fail.Store(false)
	if _, err := db.Store(ctx, "c", []*storagev1.Message{msg("a", "3")}, nil); !errors.Is(err, ErrFailStop) {
		t.Fatalf("store after failure: %v, want ErrFailStop", err)
	}
	if st := db.Stats(0); st.FailedBatches == 0 {
		t.Fatalf("failed batches not counted: %+v", st)
	}
	_ = db.Close() // Pebble may report the sticky error again
}

func TestClosed(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		db := e.db
		e.db = nil
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Store(context.Background(), "c", []*storagev1.Message{msg("a", "1")}, nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("store after close: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}, allVariants[0])
}

func FuzzDecodeIterator(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeIterator(&storagev1.Iterator{Shard: 1, Generation: 1, StaticIndex: []byte{1, 2, 3, 4}, TopicFilter: "a/+", LastSeenKey: []byte{1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0}}))
	f.Add([]byte{1, 0x22, 0xff})
	mem := vfs.NewMem()
	db, err := Open(Options{DataDir: "data", FS: mem, NShards: 2, IdleTickInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	must(db.Store(ctx, "c", []*storagev1.Message{msg("a/b", "1")}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Never panics; every error is an invalid-argument one.
		_, _, _, err := db.Next(ctx, b, Limit{Max: 5})
		if err != nil && !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrGenerationDropped) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}
