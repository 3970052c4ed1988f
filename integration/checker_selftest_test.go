package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stratamq/strata/dsd/storage"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/checker"
)

// TestCheckerCatchesUnsafeNoSync proves the history checker can fail: dsd's
// storage with unsafe_no_sync acks messages that a machine crash (Pebble's
// crash clone, which keeps only synced data) then loses, and the checker must
// report that loss. The same run with fsync must report none.
func TestCheckerCatchesUnsafeNoSync(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		t.Run(fmt.Sprintf("unsafe_no_sync=%v", unsafe), func(t *testing.T) {
			rep := crashRun(t, unsafe)
			t.Log(rep)
			if rep.Acked == 0 {
				t.Fatal("nothing was acked")
			}
			if unsafe && len(rep.Lost) == 0 {
				t.Fatalf("the checker found no loss after a crash with unsafe_no_sync: %s", rep)
			}
			if !unsafe && !rep.OK(checker.Options{}) {
				t.Fatalf("loss with fsync on: %s", rep)
			}
		})
	}
}

func crashRun(t *testing.T, unsafeNoSync bool) checker.Report {
	ctx := context.Background()
	fs := vfs.NewCrashableMem()
	opts := storage.Options{DataDir: "data", FS: fs, NShards: 2, UnsafeNoSync: unsafeNoSync}
	db, err := storage.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	var hist checker.History
	for seq := uint64(1); seq <= 200; seq++ {
		pub := fmt.Sprintf("pub-%d", seq%3)
		topic := fmt.Sprintf("selftest/%s", pub)
		hist.Add(checker.Event{Kind: checker.Invoke, Publisher: pub, Topic: topic, Seq: seq})
		m := &storagev1.Message{Topic: topic, Payload: fmt.Appendf(nil, "%s:%d", pub, seq), Qos: 1}
		if _, err := db.Store(ctx, pub, []*storagev1.Message{m}, nil); err != nil {
			t.Fatal(err)
		}
		hist.Add(checker.Event{Kind: checker.Ack, Publisher: pub, Topic: topic, Seq: seq})
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	opts.FS = crashed
	db, err = storage.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, m := range readAllInProcess(t, db, "#") {
		pub, seqText, _ := strings.Cut(string(m.GetPayload()), ":")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			t.Fatalf("bad payload %q", m.GetPayload())
		}
		hist.Add(checker.Event{Kind: checker.Deliver, Reader: "reader", Publisher: pub, Topic: m.GetTopic(), Seq: seq})
	}
	return checker.Check(hist.Events(), checker.Options{Readers: []string{"reader"}})
}

func readAllInProcess(t *testing.T, db *storage.DB, filter string) []*storagev1.Message {
	t.Helper()
	ctx := context.Background()
	streams, err := db.GetStreams(filter, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var out []*storagev1.Message
	for _, st := range streams {
		it, err := db.MakeIterator(st, filter, 0)
		if err != nil {
			t.Fatal(err)
		}
		for {
			entries, next, eos, err := db.Next(ctx, it, storage.Limit{Max: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				out = append(out, e.Message)
			}
			if eos || len(entries) == 0 {
				break
			}
			it = next
		}
	}
	return out
}
