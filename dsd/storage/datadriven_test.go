package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// t0 is the fake clock's origin in the datadriven tests; it is a multiple
// of 2^20 µs, so epochs of the default layout start at t+0.
const t0 = int64(1) << 50

func rel(ts int64) string {
	if ts < t0/2 {
		return strconv.FormatInt(ts, 10)
	}
	return fmt.Sprintf("t+%d", ts-t0)
}

// ddState is the state of one datadriven file.
type ddState struct {
	t     *testing.T
	fs    *vfs.MemFS
	clock *fakeClock
	opts  Options
	db    *DB
}

func TestDataDriven(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // compat/: data dir fixtures (compat_test.go), not scripts
		}
		runDataDriven(t, filepath.Join("testdata", e.Name()))
	}
}

func runDataDriven(t *testing.T, path string) {
	t.Run(filepath.Base(path), func(t *testing.T) {
		st := &ddState{t: t}
		defer st.close()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := st.do(d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

func (st *ddState) close() {
	if st.db != nil {
		if err := st.db.Close(); err != nil {
			st.t.Fatal(err)
		}
		st.db = nil
	}
}

func (st *ddState) shardArg(d *datadriven.TestData) int {
	shard := 0
	d.MaybeScanArgs(st.t, "shard", &shard)
	return shard
}

func durArg(t *testing.T, d *datadriven.TestData, key string) (time.Duration, bool) {
	var s string
	if !d.MaybeScanArgs(t, key, &s) {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return v, true
}

func (st *ddState) do(d *datadriven.TestData) (string, error) {
	t := st.t
	ctx := context.Background()
	switch d.Cmd {
	case "open":
		st.close()
		st.fs = vfs.NewCrashableMem()
		st.clock = newFakeClock(t0)
		st.opts = Options{DataDir: "data", FS: st.fs, NShards: 1, Now: st.clock.Now, IdleTickInterval: time.Hour}
		d.MaybeScanArgs(t, "shards", &st.opts.NShards)
		d.MaybeScanArgs(t, "epoch-bits", &st.opts.Layout.EpochBits)
		d.MaybeScanArgs(t, "layout", &st.opts.Layout.Type)
		d.MaybeScanArgs(t, "bits", &st.opts.Layout.BitsPerTopicLevel)
		if v, ok := durArg(t, d, "retention"); ok {
			st.opts.RetentionPeriod = v
		}
		if v, ok := durArg(t, d, "skew"); ok {
			st.opts.MaxClockSkew = v
		}
		var th string
		if d.MaybeScanArgs(t, "thresholds", &th) {
			for _, f := range strings.Split(th, ",") {
				n, _ := strconv.Atoi(f)
				st.opts.Layout.WildcardThresholds = append(st.opts.Layout.WildcardThresholds, n)
			}
		}
		db, err := Open(st.opts)
		st.db = db
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("site id: %d hex chars, n_shards %d\n", len(db.SiteID()), db.NShards()), nil
	case "reopen", "crash":
		if d.Cmd == "crash" {
			// The crash clone holds only what was synced; the old DB keeps
			// running on the old FS until it is closed.
			clone := st.fs.CrashClone(vfs.CrashCloneCfg{})
			st.close()
			st.fs = clone
			st.opts.FS = clone
		} else {
			st.close()
		}
		// layout= changes the layout type of new generations only.
		d.MaybeScanArgs(t, "layout", &st.opts.Layout.Type)
		db, err := Open(st.opts)
		st.db = db
		if err != nil {
			return "", err
		}
		return st.clockString(0), nil
	case "now":
		if v, ok := durArg(t, d, "set"); ok {
			st.clock.Set(t0 + v.Microseconds())
		}
		if v, ok := durArg(t, d, "advance"); ok {
			st.clock.Advance(v)
		}
		return rel(st.clock.Now().UnixMicro()) + "\n", nil
	case "store":
		var client string
		d.ScanArgs(t, "client", &client)
		var p *Producer
		if d.HasArg("epoch") {
			p = &Producer{ClientID: client}
			d.ScanArgs(t, "epoch", &p.Epoch)
			d.ScanArgs(t, "seq", &p.FirstSeq)
		}
		var msgs []*storagev1.Message
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			topic, payload, _ := strings.Cut(line, " ")
			msgs = append(msgs, msg(topic, payload))
		}
		res, err := st.db.Store(ctx, client, msgs, p)
		if err != nil {
			return "", err
		}
		if res.Duplicate {
			return fmt.Sprintf("shard %d: duplicate\n", res.Shard), nil
		}
		ts := make([]string, len(res.TimestampsUs))
		for i, v := range res.TimestampsUs {
			ts[i] = rel(v)
		}
		return fmt.Sprintf("shard %d: stored at %s\n", res.Shard, strings.Join(ts, " ")), nil
	case "tick":
		shard := st.shardArg(d)
		tickForTest(t, st.db, shard)
		return st.clockString(shard), nil
	case "clock":
		return st.clockString(st.shardArg(d)), nil
	case "add-generation":
		g, err := st.db.AddGeneration(st.shardArg(d))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("added generation %d since %s\n", g.Id, rel(g.SinceUs)), nil
	case "drop-generation":
		var id uint64
		d.ScanArgs(t, "id", &id)
		if err := st.db.DropGeneration(st.shardArg(d), id); err != nil {
			return "", err
		}
		return "ok\n", nil
	case "generations":
		var b strings.Builder
		shard := st.shardArg(d)
		counts := st.db.MessageCounts(shard)
		for _, g := range st.db.Generations(shard) {
			until := "current"
			if g.UntilUs != 0 {
				until = rel(g.UntilUs)
			}
			fmt.Fprintf(&b, "%d: since %s until %s created %s messages %d layout %s",
				g.Id, rel(g.SinceUs), until, rel(g.CreatedAtUs), counts[g.Id], g.Layout.Type)
			if g.Layout.Type == LayoutWildcardOptimized {
				fmt.Fprintf(&b, " epoch_bits %d", g.Layout.EpochBits)
			}
			b.WriteString("\n")
		}
		return b.String(), nil
	case "streams":
		var filter string
		d.ScanArgs(t, "filter", &filter)
		streams, err := st.db.GetStreams(filter, 0, -1)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, s := range streams {
			fmt.Fprintf(&b, "shard %d gen %d %s\n", s.Shard, s.Generation, s.Structure)
		}
		return b.String(), nil
	case "read":
		return st.read(d)
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return "", nil
}

func (st *ddState) clockString(shard int) string {
	return fmt.Sprintf("assigned %s readable %s watermark %s\n",
		rel(st.db.Stats(shard).AssignedClockUs), rel(st.db.ReadableClock(shard)), rel(st.db.Watermarks()[shard]))
}

// read lists, per stream, what Next returns from the start (or start=DUR)
// until it returns nothing.
func (st *ddState) read(d *datadriven.TestData) (string, error) {
	var filter string
	d.ScanArgs(st.t, "filter", &filter)
	start := int64(0)
	if v, ok := durArg(st.t, d, "start"); ok {
		start = t0 + v.Microseconds()
	}
	streams, err := st.db.GetStreams(filter, start, -1)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, s := range streams {
		fmt.Fprintf(&b, "shard %d gen %d %s:", s.Shard, s.Generation, s.Structure)
		it, err := st.db.MakeIterator(s, filter, start)
		if err != nil {
			return "", err
		}
		var lines []string
		eos := false
		for {
			es, next, end, err := st.db.Next(context.Background(), it, Limit{Max: 3})
			if err != nil {
				return "", err
			}
			for _, e := range es {
				lines = append(lines, fmt.Sprintf("  %s %s %s", e.Message.Topic, e.Message.Payload, rel(e.Message.TimestampUs)))
			}
			it, eos = next, end
			if len(es) == 0 {
				break
			}
		}
		if eos {
			b.WriteString(" end_of_stream")
		}
		b.WriteString("\n")
		sort.Strings(lines) // order across topics is not defined
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String(), nil
}

// tickForTest runs the shard's idle work (tick, retention) now and waits
// until its commit, if any, is readable.
func tickForTest(t testing.TB, db *DB, shard int) {
	t.Helper()
	s := db.shards[shard]
	if _, err := s.do(context.Background(), &request{kind: reqTick}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tick's commit", func() bool { return s.readable.Load() == s.assigned.Load() })
}
