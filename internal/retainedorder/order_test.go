package retainedorder

import (
	"testing"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func TestNewer(t *testing.T) {
	rec := func(ts int64, shard uint32, pub string) *storagev1.RetainedRecord {
		return &storagev1.RetainedRecord{TimestampUs: ts, Shard: shard, PublisherClientId: pub}
	}
	cases := []struct {
		a, b  *storagev1.RetainedRecord
		bWins bool
	}{
		{nil, rec(1, 0, "a"), true},
		{rec(1, 0, "a"), nil, false},
		{rec(1, 0, "a"), rec(2, 0, "a"), true},
		{rec(2, 0, "a"), rec(1, 9, "z"), false},
		{rec(1, 1, "a"), rec(1, 2, "a"), true},
		{rec(1, 2, "a"), rec(1, 1, "z"), false},
		{rec(1, 1, "a"), rec(1, 1, "b"), true},
		{rec(1, 1, "a"), rec(1, 1, "a"), false}, // equal: the first stays
	}
	for i, c := range cases {
		if got := Newer(c.a, c.b); (got == c.b && c.b != nil) != c.bWins {
			t.Errorf("case %d: b wins = %v, want %v", i, got == c.b, c.bWins)
		}
	}
}
