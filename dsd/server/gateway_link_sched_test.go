package server

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// helloed opens a raw link and passes the hello.
func helloed(t *testing.T, e *linkEnv, epoch uint64) dsdv1.GatewayLinkService_GatewayLinkClient {
	t.Helper()
	s := rawLink(t, e)
	send(t, s, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Hello{Hello: &dsdv1.GatewayHello{GatewayId: "gw", Epoch: epoch}}})
	if r, err := s.Recv(); err != nil || r.GetWelcome() == nil {
		t.Fatalf("welcome: %v %v", r, err)
	}
	return s
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

func (e *linkEnv) reads(result int) int {
	return int(metricValue(e.t, e.srv.link.metrics.linkReads[result]))
}

// TestLinkWakesOnlyTouchedStream: commits to another stream of the same
// shard do not wake a Read entry (no Next: the empty-read counter does not
// move).
func TestLinkWakesOnlyTouchedStream(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	e.store("pub", "quiet/topic", []byte("0"))
	e.store("pub", "busy/topic", []byte("0"))
	wm := e.watermark(e.db.ShardOf("pub"))
	if _, err := l.AddRead(e.iteratorFor("quiet/topic", wm), 100); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first read", func() bool { return e.reads(linkReadEmpty) == 1 })
	for i := range 20 {
		e.store("pub", "busy/topic", fmt.Appendf(nil, "%d", i)) // same shard, other stream
	}
	if n := e.reads(linkReadEmpty) + e.reads(linkReadData); n != 1 {
		t.Fatalf("%d reads after 20 commits to another stream of the shard, want 1", n)
	}
	e.store("pub", "quiet/topic", []byte("1"))
	if b := ev.batch(t); len(b.GetMessages()) != 1 || string(b.GetMessages()[0].GetMessage().GetPayload()) != "1" {
		t.Fatalf("batch %v", b)
	}
	// The first read, the one that pushed, and maybe the one after it
	// (an entry that pushed reads again at once): never one per commit.
	eventually(t, "entries idle", func() bool { return metricValue(t, e.srv.link.metrics.linkRunnable) == 0 })
	if n := e.reads(linkReadEmpty) + e.reads(linkReadData); n > 3 {
		t.Fatalf("%d reads for 21 commits of which 1 touched the entry's stream", n)
	}
}

// TestLinkVaryingLevelsWake: a stream with varying levels is pushed once
// its epoch completes, woken by the commit feed (not the safety net).
func TestLinkVaryingLevelsWake(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{IdlePollInterval: time.Hour})
	l := e.open()
	ev := recvAll(l)
	// 200 values at the first level pass its wildcard threshold (100):
	// later values are learned as varying.
	msgs := make([]*storagev1.Message, 200)
	for i := range msgs {
		msgs[i] = &storagev1.Message{Topic: fmt.Sprintf("dev/%d/t", i), Payload: []byte("x"), Qos: 1}
	}
	if _, err := e.c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "pub", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	shard := e.db.ShardOf("pub")
	wm := e.watermark(shard)
	ss, err := e.db.GetStreams("dev/+/t", wm, shard)
	if err != nil {
		t.Fatal(err)
	}
	var varying []byte
	for _, st := range ss {
		if st.Structure == "dev/+/t" {
			varying, err = e.db.MakeIterator(st, "dev/+/t", wm)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if varying == nil {
		t.Fatalf("no varying stream among %v", ss)
	}
	if _, err := l.AddRead(varying, 100); err != nil {
		t.Fatal(err)
	}
	e.store("pub", "dev/new-device/t", []byte("late"))
	// Pushed within an epoch (~1 s) plus an idle tick, with the safety
	// net an hour away.
	if b := ev.batch(t); len(b.GetMessages()) != 1 || string(b.GetMessages()[0].GetMessage().GetPayload()) != "late" {
		t.Fatalf("batch %v", b)
	}
}

// TestLinkFairness: with one worker, a quiet entry is pushed while a busy
// entry still has hundreds of batches to go (round-robin, one batch per
// turn). Both entries are live before either has work, and one commit
// gives them their messages (one Store: the busy stream's 2,999 and the
// quiet one's), so the order of the pushes depends on the scheduler alone,
// not on when the test's requests reach dsd.
func TestLinkFairness(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{Workers: 1})
	l := e.open()
	ev := recvAll(l)
	const busyMsgs, batch = 3000, 5
	e.store("pub", "busy", []byte("0"))
	e.store("pub", "quiet", []byte("q0"))
	busy, err := l.AddReadBatch(e.iteratorFor("busy", 0), busyMsgs, batch)
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := l.AddRead(e.iteratorFor("quiet", 0), 10)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for seen := 0; seen < 2; seen++ { // each entry's first message
		b := ev.batch(t)
		if b.GetEntryId() == busy {
			got += len(b.GetMessages())
		}
	}
	msgs := make([]*storagev1.Message, 0, busyMsgs)
	for i := 1; i < busyMsgs; i++ {
		msgs = append(msgs, &storagev1.Message{Topic: "busy", Payload: fmt.Appendf(nil, "%d", i), Qos: 1})
	}
	msgs = append(msgs, &storagev1.Message{Topic: "quiet", Payload: []byte("q1"), Qos: 1})
	if _, err := e.c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "pub", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	var before int
	for got < busyMsgs {
		b := ev.batch(t)
		switch b.GetEntryId() {
		case quiet:
			if before > 2 {
				t.Fatalf("the quiet entry waited for %d batches of the busy one", before)
			}
			before = -1 << 30
		case busy:
			if want := fmt.Sprint(got); payloads(b)[0] != want {
				t.Fatalf("busy batch starts at %s, want %s", payloads(b)[0], want)
			}
			got += len(b.GetMessages())
			before++
		}
	}
	if before >= 0 {
		t.Fatal("the quiet entry was never pushed")
	}
}

// TestLinkWindowsAcrossEntries: several Read entries with small windows
// share the scheduler; each gets every message in order, resuming on its
// acks only.
func TestLinkWindowsAcrossEntries(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{Workers: 2})
	l := e.open()
	ev := recvAll(l)
	const entries, msgs, window = 4, 30, 4
	ids := map[uint64]int{}
	for i := range entries {
		topic := fmt.Sprintf("w/%d", i)
		batch := make([]*storagev1.Message, msgs)
		for j := range batch {
			batch[j] = &storagev1.Message{Topic: topic, Payload: fmt.Appendf(nil, "%d", j), Qos: 1}
		}
		if _, err := e.c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "pub", Messages: batch}); err != nil {
			t.Fatal(err)
		}
		id, err := l.AddRead(e.iteratorFor(topic, 0), window)
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = 0
	}
	unacked := map[uint64]int{}
	for done := 0; done < entries; {
		b := ev.batch(t)
		id := b.GetEntryId()
		next, ok := ids[id]
		if !ok {
			t.Fatalf("batch of unknown entry %d", id)
		}
		if p := payloads(b); p[0] != fmt.Sprint(next) {
			t.Fatalf("entry %d: batch starts at %s, want %d", id, p[0], next)
		}
		unacked[id] += len(b.GetMessages())
		if unacked[id] > window {
			t.Fatalf("entry %d: %d unacked > window %d", id, unacked[id], window)
		}
		ids[id] = next + len(b.GetMessages())
		if ids[id] == msgs {
			done++
		}
		if err := l.Ack(id, b.GetBatchSeq()); err != nil {
			t.Fatal(err)
		}
		unacked[id] -= len(b.GetMessages())
	}
}

// TestLinkEntryIDsIncrease: an id at or below the highest used one is
// refused as reused, whether its entry lives or not; acks of such ids are
// ignored.
func TestLinkEntryIDsIncrease(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	s := helloed(t, e, 1)
	send(t, s, watchReq(10, "a/#"))
	if r, err := s.Recv(); err != nil || r.GetAnnouncement().GetEntryId() != 10 {
		t.Fatalf("%v %v", r, err)
	}
	for _, c := range []struct {
		id    uint64
		ended bool
	}{{10, false}, {5, true}} {
		send(t, s, watchReq(c.id, "a/#"))
		r, err := s.Recv()
		if err != nil || r.GetError().GetEntryId() != c.id || r.GetError().GetEntryEnded() != c.ended {
			t.Fatalf("id %d: %v %v", c.id, r, err)
		}
	}
	send(t, s, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: &dsdv1.BatchAck{EntryId: 7, BatchSeq: 1}}})  // below: ignored
	send(t, s, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: &dsdv1.BatchAck{EntryId: 11, BatchSeq: 1}}}) // above: unknown
	if r, err := s.Recv(); err != nil || r.GetError().GetEntryId() != 11 || !r.GetError().GetEntryEnded() {
		t.Fatalf("ack of 11: %v %v", r, err)
	}
	send(t, s, watchReq(12, "a/#"))
	if r, err := s.Recv(); err != nil || r.GetAnnouncement().GetEntryId() != 12 {
		t.Fatalf("%v %v", r, err)
	}
}

// TestLinkMultiShardWatch: one Watch entry over several shards, each from
// its own start, announces each shard's streams from that start.
func TestLinkMultiShardWatch(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	a, b := "pub-a", "pub-b"
	for i := 0; e.db.ShardOf(a) == e.db.ShardOf(b); i++ {
		b = fmt.Sprintf("pub-b%d", i)
	}
	sa, sb := e.db.ShardOf(a), e.db.ShardOf(b)
	e.store(a, "m/old", []byte("old-a"))
	starts := map[int]int64{sa: e.watermark(sa), sb: 0}
	id, err := l.AddShardsWatch(nil, "m/#", starts)
	if err != nil {
		t.Fatal(err)
	}
	ann := ev.announcement(t)
	if ann.GetEntryId() != id || !ann.GetInitial() || len(ann.GetStreams()) != 1 || int(ann.GetStreams()[0].GetStream().GetShard()) != sa {
		t.Fatalf("initial %v", ann)
	}
	e.store(b, "m/new", []byte("new-b"))
	ann = ev.announcement(t)
	if len(ann.GetStreams()) != 1 || int(ann.GetStreams()[0].GetStream().GetShard()) != sb {
		t.Fatalf("announcement %v", ann)
	}
	// Shard a's iterator starts at its watermark: the old message is not read.
	res, err := e.c.Storage.Next(context.Background(), &dsdv1.NextRequest{Iterator: ann.GetStreams()[0].GetIterator(), MaxMessages: 10})
	if err != nil || len(res.GetMessages()) != 1 || string(res.GetMessages()[0].GetMessage().GetPayload()) != "new-b" {
		t.Fatalf("%v %v", res, err)
	}
	// Bad shard lists are refused.
	for i, shards := range [][]*dsdv1.WatchShard{{{Shard: 99}}, {{Shard: 1}, {Shard: 1}}} {
		raw := helloed(t, e, uint64(10+i))
		send(t, raw, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Watch{Watch: &dsdv1.WatchEntry{EntryId: 1, TopicFilter: "m/#", Shards: shards}}})
		if r, err := raw.Recv(); err != nil || r.GetError() == nil || !r.GetError().GetEntryEnded() {
			t.Fatalf("shards %v: %v %v", shards, r, err)
		}
	}
}

// idleEntries is the number of idle entries of each kind
// TestLinkIdleEntriesMemory adds (-short: fewer).
func idleEntries() int {
	if testing.Short() {
		return 2000
	}
	return 20000
}

// TestLinkIdleEntriesMemory measures what idle entries cost dsd: heap and
// stack bytes per entry after GC (the test's client shares the process; it keeps
// nothing per entry), and goroutines, which must not grow with entries.
// Then the server stops gracefully with all of them live.
func TestLinkIdleEntriesMemory(t *testing.T) {
	e := startLinkServerShards(t, GatewayLinkOptions{}, 16)
	l := e.open()
	ev := recvAll(l)
	n := idleEntries()
	e.store("pub", "idle/topic", []byte("0"))
	it := e.iteratorFor("idle/topic", e.watermark(e.db.ShardOf("pub")))
	starts := map[int]int64{}
	for shard := range e.db.NShards() {
		starts[shard] = e.watermark(shard)
	}
	go func() { // drain the initial announcements
		for range ev.ch {
		}
	}()
	settle := func() (heap uint64, goroutines int) {
		eventually(t, "entries idle", func() bool {
			return metricValue(t, e.srv.link.metrics.linkRunnable) == 0
		})
		for range 3 {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse, runtime.NumGoroutine()
	}
	heap0, g0 := settle()
	add := func(what string, f func(i int) error) (perEntry float64, goroutines int) {
		start := time.Now()
		before := e.srv.link.entries.Load()
		for i := range n {
			if err := f(i); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, what+" live", func() bool { return e.srv.link.entries.Load() == before+int64(n) })
		h, g := settle()
		t.Logf("%d %s added and idle in %v (%.0f/s)", n, what, time.Since(start), float64(n)/time.Since(start).Seconds())
		return (float64(h) - float64(heap0)) / float64(n), g
	}
	watchBytes, g1 := add("watches", func(int) error {
		_, err := l.AddShardsWatch(nil, "idle/#", starts)
		return err
	})
	heap0, _ = settle()
	readBytes, g2 := add("reads", func(int) error { _, err := l.AddRead(it, 100); return err })
	t.Logf("%d idle Watch entries (%d shards each): %.0f heap+stack bytes per entry; %d idle Read entries: %.0f bytes per entry; goroutines %d -> %d -> %d",
		n, len(starts), watchBytes, n, readBytes, g0, g1, g2)
	if g1 > g0+8 || g2 > g0+8 {
		t.Fatalf("goroutines grew with entries: %d -> %d -> %d", g0, g1, g2)
	}
	// A goroutine per entry cost 5.8 KB (Watch) and 10 KB (Read) here;
	// a loose bound catches a return to it.
	if watchBytes > 4096 || readBytes > 2048 {
		t.Fatalf("idle entries cost %.0f (Watch) and %.0f (Read) bytes each", watchBytes, readBytes)
	}
	// Graceful stop with every entry live.
	e.stop()
	eventually(t, "entries ended", func() bool { return e.srv.link.entries.Load() == 0 && e.srv.link.links.Load() == 0 })
}

// TestLinkSharedReads: Read entries of one link at the same position of the
// same stream and filter get one read and one ReadBatch (the others listed
// in shared, each with its own batch seq and iterator); every entry still
// receives every message once and in order, and acks each batch it got.
func TestLinkSharedReads(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{Workers: 4})
	l := e.open()
	ev := recvAll(l)
	const entries, msgs = 8, 20
	e.store("pub", "fan/t", []byte("0"))
	got := map[uint64][]string{}
	lastSeq := map[uint64]uint64{}
	take := func(b *dsdv1.ReadBatch) (responses int) {
		deliver := func(id, seq uint64) {
			if seq != lastSeq[id]+1 {
				t.Fatalf("entry %d: batch %d after %d", id, seq, lastSeq[id])
			}
			lastSeq[id] = seq
			got[id] = append(got[id], payloads(b)...)
			if err := l.Ack(id, seq); err != nil {
				t.Fatal(err)
			}
		}
		deliver(b.GetEntryId(), b.GetBatchSeq())
		for _, s := range b.GetShared() {
			deliver(s.GetEntryId(), s.GetBatchSeq())
		}
		return 1
	}
	for range entries {
		id, err := l.AddRead(e.iteratorFor("fan/t", 0), 100)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = nil
	}
	// Each reads "0" from its own start: nothing to share yet.
	for n := 0; n < entries; {
		b := ev.batch(t)
		take(b)
		n += 1 + len(b.GetShared())
	}
	responses := 0
	for i := 1; i <= msgs; i++ {
		e.store("pub", "fan/t", []byte(fmt.Sprint(i)))
		want := fmt.Sprint(i)
		for {
			done := true
			for _, p := range got {
				if len(p) == 0 || p[len(p)-1] != want {
					done = false
				}
			}
			if done {
				break
			}
			responses += take(ev.batch(t))
		}
	}
	for id, p := range got {
		if len(p) != msgs+1 {
			t.Fatalf("entry %d got %v, want 0..%d once each", id, p, msgs)
		}
		for i, s := range p {
			if s != fmt.Sprint(i) {
				t.Fatalf("entry %d got %v, want 0..%d in order", id, p, msgs)
			}
		}
	}
	if responses >= msgs*entries {
		t.Fatalf("%d batches for %d messages to %d entries: no read was shared", responses, msgs, entries)
	}
	shared := metricValue(t, e.srv.link.metrics.linkSharedReads)
	t.Logf("%d messages to %d entries in %d batches; %v shared", msgs, entries, responses, shared)
	if shared == 0 {
		t.Fatal("strata_ds_link_shared_reads_total is 0")
	}
}
