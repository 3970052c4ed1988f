package storage

import (
	"context"
	"fmt"
	"slices"
	"testing"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// TestCompatV1Fixture opens the committed v1 data dir (compat_fixture_test.go)
// with today's code: its wildcard_optimized generations read back every
// message, single-topic and wildcard streams alike; a generation added now
// is wildcard_optimized_v2 (the default); reads span both generations; and
// the v1 generation can be dropped.
func TestCompatV1Fixture(t *testing.T) {
	dir := t.TempDir()
	if err := copyTree(v1FixtureDir, dir); err != nil {
		t.Fatal(err)
	}
	opts := Options{DataDir: dir, NShards: v1FixtureOptions().NShards, EmergencyBallastBytes: -1, MinFreeBytes: -1, IdleTickInterval: v1FixtureOptions().IdleTickInterval}
	e := &env{t: t, opts: opts}
	e.open()
	defer e.close()

	// The fixture's current generation is v1: the last epoch of its
	// wildcard stream becomes readable by an idle tick (the wall clock is
	// long past it).
	for s := 0; s < e.db.NShards(); s++ {
		tickForTest(t, e.db, s)
	}
	var old []string
	for _, m := range v1FixtureMessages() {
		old = append(old, m.topic+" "+m.payload)
	}
	for s := 0; s < e.db.NShards(); s++ {
		gens := e.db.Generations(s)
		if len(gens) != 1 || gens[0].Layout.GetType() != LayoutWildcardOptimized {
			t.Fatalf("shard %d: generations %v, want one wildcard_optimized", s, gens)
		}
	}
	checkRead(t, e.db, "#", old)
	checkRead(t, e.db, "sensors/dev03/temp", filterLines(old, "sensors/dev03/temp"))
	checkRead(t, e.db, "plant/status", filterLines(old, "plant/status"))
	checkRead(t, e.db, "sensors/+/temp", filterLines(old, "sensors/+/temp"))
	wide := false
	for _, s := range must(e.db.GetStreams("sensors/+/temp", 0, -1)) {
		wide = wide || s.Structure == "sensors/+/temp"
	}
	if !wide {
		t.Fatal("the fixture has no wildcard stream sensors/+/temp")
	}

	for s := 0; s < e.db.NShards(); s++ {
		g := must(e.db.AddGeneration(s))
		if g.Layout.GetType() != LayoutWildcardOptimizedV2 {
			t.Fatalf("shard %d: new generation has layout %q, want the v2 default", s, g.Layout.GetType())
		}
	}
	all := slices.Clone(old)
	ctx := context.Background()
	for d := 0; d < 14; d++ {
		client := fmt.Sprintf("dev%02d", d)
		topic := fmt.Sprintf("sensors/%s/temp", client)
		must(e.db.Store(ctx, client, []*storagev1.Message{msg(topic, "new")}, &Producer{ClientID: client, Epoch: 2, FirstSeq: 1}))
		all = append(all, topic+" new")
	}
	must(e.db.Store(ctx, "plc", []*storagev1.Message{msg("plant/status", "new")}, nil))
	all = append(all, "plant/status new")
	check := func() {
		t.Helper()
		checkRead(t, e.db, "#", all)
		checkRead(t, e.db, "sensors/+/temp", filterLines(all, "sensors/+/temp"))
		checkRead(t, e.db, "sensors/dev03/temp", filterLines(all, "sensors/dev03/temp"))
		checkRead(t, e.db, "sensors/dev13/+", filterLines(all, "sensors/dev13/+"))
		checkRead(t, e.db, "plant/+", filterLines(all, "plant/+"))
	}
	check()
	e.reopen()
	check()

	for s := 0; s < e.db.NShards(); s++ {
		if err := e.db.DropGeneration(s, 1); err != nil {
			t.Fatalf("shard %d: drop the v1 generation: %v", s, err)
		}
	}
	all = all[len(old):]
	check()
	e.reopen()
	check()
}

// filterLines keeps the "topic payload" lines whose topic matches filter.
func filterLines(lines []string, filter string) []string {
	var out []string
	for _, l := range lines {
		topic, _, _ := cutSpace(l)
		if lts.MatchTopic(filter, topic) {
			out = append(out, l)
		}
	}
	return out
}

func cutSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// checkRead reads filter over every stream and compares the "topic
// payload" lines with want, as multisets.
func checkRead(t *testing.T, db *DB, filter string, want []string) {
	t.Helper()
	var got []string
	for _, m := range readAll(t, db, filter, 0) {
		got = append(got, m.Topic+" "+string(m.Payload))
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("read %q: got %d messages, want %d\ngot  %q\nwant %q", filter, len(got), len(want), got, want)
	}
}
