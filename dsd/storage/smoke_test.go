package storage

import (
	"context"
	"testing"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func TestSmoke(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		res, err := e.db.Store(ctx, "c1", []*storagev1.Message{msg("a/b", "1"), msg("a/c", "2")}, &Producer{ClientID: "c1", Epoch: 1, FirstSeq: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicate || len(res.TimestampsUs) != 2 || res.TimestampsUs[0] >= res.TimestampsUs[1] || res.Shard != e.db.ShardOf("c1") {
			t.Fatalf("first store: %+v, want two increasing timestamps in shard %d, not a duplicate", res, e.db.ShardOf("c1"))
		}
		got := readAll(t, e.db, "a/+", 0)
		if len(got) != 2 {
			t.Fatalf("got %d", len(got))
		}
		e.reopen()
		got = readAll(t, e.db, "#", 0)
		if len(got) != 2 {
			t.Fatalf("after reopen got %d", len(got))
		}
		res, err = e.db.Store(ctx, "c1", []*storagev1.Message{msg("a/b", "1"), msg("a/c", "2")}, &Producer{ClientID: "c1", Epoch: 1, FirstSeq: 1})
		if err != nil || !res.Duplicate {
			t.Fatalf("dup: %+v %v", res, err)
		}
	})
}
