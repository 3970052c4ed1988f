package server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// linkEnv is a real dsd (disk DB, gRPC on 127.0.0.1) and a client.
type linkEnv struct {
	t    testing.TB
	db   *storage.DB
	srv  *Server
	c    *client.Client
	stop context.CancelFunc // stops Serve
}

// startLinkServer runs a Server with the given link options over a fresh
// on-disk DB with 4 shards.
func startLinkServer(t testing.TB, lo GatewayLinkOptions) *linkEnv {
	t.Helper()
	return startLinkServerShards(t, lo, 4)
}

// startLinkServerShards is startLinkServer with nShards shards.
func startLinkServerShards(t testing.TB, lo GatewayLinkOptions, nShards int) *linkEnv {
	t.Helper()
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: nShards})
	if err != nil {
		t.Fatal(err)
	}
	srv, stop := listenAndServe(t, db, Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", MaxRecvMsgSize: 1<<20 + 64<<10, GatewayLink: lo})
	c, err := client.Dial(srv.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // before the server stops
	return &linkEnv{t: t, db: db, srv: srv, c: c, stop: stop}
}

func (e *linkEnv) open() *client.Link {
	e.t.Helper()
	l, err := e.c.OpenLink(context.Background(), "gw-test", 1)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { l.Close() })
	return l
}

// store stores one message and returns its timestamp.
func (e *linkEnv) store(clientID, topic string, payload []byte) int64 {
	e.t.Helper()
	res, err := e.c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: clientID, Messages: []*storagev1.Message{{Topic: topic, Payload: payload, Qos: 1}}})
	if err != nil {
		e.t.Fatalf("store %s: %v", topic, err)
	}
	return res.GetTimestampsUs()[0]
}

// watermark is the shard's watermark now.
func (e *linkEnv) watermark(shard int) int64 {
	e.t.Helper()
	return e.db.Watermarks()[shard]
}

// events receives a link's responses on a channel, so tests can wait with
// deadlines. The channel closes when the link ends; err is its end.
type events struct {
	ch  chan *dsdv1.GatewayLinkResponse
	err chan error
}

func recvAll(l *client.Link) *events {
	ev := &events{ch: make(chan *dsdv1.GatewayLinkResponse, 1024), err: make(chan error, 1)}
	go func() {
		defer close(ev.ch)
		for {
			r, err := l.Recv()
			if err != nil {
				ev.err <- err
				return
			}
			ev.ch <- r
		}
	}()
	return ev
}

const eventTimeout = 10 * time.Second

func (ev *events) next(t testing.TB) *dsdv1.GatewayLinkResponse {
	t.Helper()
	select {
	case r, ok := <-ev.ch:
		if !ok {
			t.Fatalf("link ended: %v", <-ev.err)
		}
		return r
	case <-time.After(eventTimeout):
		t.Fatal("no event within the deadline")
		return nil
	}
}

func (ev *events) announcement(t testing.TB) *dsdv1.StreamsAnnouncement {
	t.Helper()
	r := ev.next(t)
	if r.GetAnnouncement() == nil {
		t.Fatalf("want an announcement, got %v", r)
	}
	return r.GetAnnouncement()
}

func (ev *events) batch(t testing.TB) *dsdv1.ReadBatch {
	t.Helper()
	r := ev.next(t)
	if r.GetBatch() == nil {
		t.Fatalf("want a batch, got %v", r)
	}
	return r.GetBatch()
}

func (ev *events) entryError(t testing.TB) *dsdv1.EntryError {
	t.Helper()
	r := ev.next(t)
	if r.GetError() == nil {
		t.Fatalf("want an entry error, got %v", r)
	}
	return r.GetError()
}

// quiet asserts that no event arrives within d (used only to show that
// something does NOT happen, after a positive round trip).
func (ev *events) quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case r := <-ev.ch:
		t.Fatalf("unexpected event %v", r)
	case <-time.After(d):
	}
}

// eventually waits for cond with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, what, cond)
}

// iteratorFor makes an iterator for the single stream of topic from startUs.
func (e *linkEnv) iteratorFor(topic string, startUs int64) []byte {
	e.t.Helper()
	ss, err := e.db.GetStreams(topic, startUs, -1)
	if err != nil || len(ss) != 1 {
		e.t.Fatalf("streams of %s: %v %v", topic, ss, err)
	}
	it, err := e.db.MakeIterator(ss[0], topic, startUs)
	if err != nil {
		e.t.Fatal(err)
	}
	return it
}

func payloads(b *dsdv1.ReadBatch) []string {
	out := make([]string, len(b.GetMessages()))
	for i, m := range b.GetMessages() {
		out[i] = string(m.GetMessage().GetPayload())
	}
	return out
}

func TestLinkWatchAnnouncesNewStreams(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	shard := e.db.ShardOf("pub")
	e.store("pub", "sensors/old/temp", []byte("0"))

	id, err := l.AddWatch("sensors/#", -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := ev.announcement(t)
	if a.GetEntryId() != id || !a.GetInitial() || len(a.GetStreams()) != 1 || a.GetStreams()[0].GetStream().GetStructure() != "sensors/old/temp" {
		t.Fatalf("initial announcement %v", a)
	}

	// A stream created after the watch started is announced, once.
	e.store("pub", "sensors/new/temp", []byte("1"))
	a = ev.announcement(t)
	if a.GetInitial() || len(a.GetStreams()) != 1 || a.GetStreams()[0].GetStream().GetStructure() != "sensors/new/temp" {
		t.Fatalf("announcement %v", a)
	}
	e.store("pub", "sensors/new/temp", []byte("2")) // a known stream: no announcement
	e.store("pub", "sensors/other/temp", []byte("3"))
	a = ev.announcement(t)
	if len(a.GetStreams()) != 1 || a.GetStreams()[0].GetStream().GetStructure() != "sensors/other/temp" {
		t.Fatalf("announcement %v", a)
	}

	// The streams of a new generation are announced when they appear.
	g, err := e.db.AddGeneration(shard)
	if err != nil {
		t.Fatal(err)
	}
	e.store("pub", "sensors/new/temp", []byte("4"))
	for {
		a = ev.announcement(t)
		if len(a.GetStreams()) > 0 {
			break
		}
	}
	if st := a.GetStreams()[0].GetStream(); st.GetGeneration() != g.GetId() || st.GetStructure() != "sensors/new/temp" || len(a.GetStreams()) != 1 {
		t.Fatalf("new generation announcement %v", a)
	}
	// The announced iterator reads the stream from the watch's start.
	res, err := e.c.Storage.Next(context.Background(), &dsdv1.NextRequest{Iterator: a.GetStreams()[0].GetIterator(), MaxMessages: 10})
	if err != nil || len(res.GetMessages()) != 1 || string(res.GetMessages()[0].GetMessage().GetPayload()) != "4" {
		t.Fatalf("read announced iterator: %v %v", res, err)
	}
}

func TestLinkReadPushesAfterWatermark(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	shard := e.db.ShardOf("car")
	e.store("car", "fleet/car/speed", []byte("old"))
	wm := e.watermark(shard)
	id, err := l.AddRead(e.iteratorFor("fleet/car/speed", wm), 100)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond) // models: the scenario, a publish 1 ms after the read started
	sent := time.Now()
	ts := e.store("car", "fleet/car/speed", []byte("new"))
	b := ev.batch(t)
	t.Logf("publish → push: %v", time.Since(sent))
	if b.GetEntryId() != id || b.GetBatchSeq() != 1 || len(b.GetMessages()) != 1 || string(b.GetMessages()[0].GetMessage().GetPayload()) != "new" || b.GetMessages()[0].GetMessage().GetTimestampUs() != ts {
		t.Fatalf("batch %v", b)
	}
}

func TestLinkFirstMessageOfNewTopic(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	shard := e.db.ShardOf("pub")
	wm := e.watermark(shard)
	wid, err := l.AddWatch("brand/+/new", shard, wm)
	if err != nil {
		t.Fatal(err)
	}
	if a := ev.announcement(t); !a.GetInitial() || len(a.GetStreams()) != 0 {
		t.Fatalf("initial announcement %v", a)
	}
	e.store("pub", "brand/x/new", []byte("first"))
	a := ev.announcement(t)
	if a.GetEntryId() != wid || len(a.GetStreams()) != 1 {
		t.Fatalf("announcement %v", a)
	}
	rid, err := l.AddRead(a.GetStreams()[0].GetIterator(), 10)
	if err != nil {
		t.Fatal(err)
	}
	b := ev.batch(t)
	if b.GetEntryId() != rid || len(b.GetMessages()) != 1 || string(b.GetMessages()[0].GetMessage().GetPayload()) != "first" {
		t.Fatalf("batch %v", b)
	}
}

func TestLinkWindowAndAck(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	msgs := make([]*storagev1.Message, 25)
	for i := range msgs {
		msgs[i] = &storagev1.Message{Topic: "w/t", Payload: []byte(fmt.Sprint(i))}
	}
	if _, err := e.c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "p", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	id, err := l.AddRead(e.iteratorFor("w/t", 0), 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	b := ev.batch(t)
	got = append(got, payloads(b)...)
	if len(got) != 10 {
		t.Fatalf("first push: %d messages, want exactly 10", len(got))
	}
	// Nothing more until an ack: a round trip through the link (an ack of
	// a batch that does not exist is answered with an error event) shows
	// the server handled later requests, then a quiet period shows no push.
	if err := l.Ack(id, 99); err != nil {
		t.Fatal(err)
	}
	if er := ev.entryError(t); er.GetEntryId() != id || codes.Code(er.GetCode()) != codes.InvalidArgument || er.GetEntryEnded() {
		t.Fatalf("bad ack: %v", er)
	}
	e.store("p", "w/t", []byte("25")) // a commit wakes the shard; still nothing
	ev.quiet(t, 200*time.Millisecond)
	for len(got) < 26 {
		if err := l.Ack(id, b.GetBatchSeq()); err != nil {
			t.Fatal(err)
		}
		b = ev.batch(t)
		if len(b.GetMessages()) > 10 {
			t.Fatalf("push of %d messages over a window of 10", len(b.GetMessages()))
		}
		got = append(got, payloads(b)...)
	}
	for i, p := range got {
		if p != fmt.Sprint(i) {
			t.Fatalf("message %d = %q (order broken): %v", i, p, got)
		}
	}
}

func TestLinkPerEntryBatchSize(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{BatchSize: 3})
	l := e.open()
	ev := recvAll(l)
	msgs := make([]*storagev1.Message, 5)
	for i := range msgs {
		msgs[i] = &storagev1.Message{Topic: "b/t", Payload: []byte(fmt.Sprint(i))}
	}
	if _, err := e.c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "p", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		entryBatch uint32
		want       []int
	}{{0, []int{3, 2}}, {2, []int{2, 2, 1}}, {10, []int{3, 2}}} {
		if _, err := l.AddReadBatch(e.iteratorFor("b/t", 0), 100, tc.entryBatch); err != nil {
			t.Fatal(err)
		}
		for _, n := range tc.want {
			if b := ev.batch(t); len(b.GetMessages()) != n {
				t.Fatalf("entry batch %d: batch of %d messages, want sizes %v", tc.entryBatch, len(b.GetMessages()), tc.want)
			}
		}
	}
}

func TestLinkOversizedMessage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes int
	}{{"default", 0}, {"batch_bytes=256KiB", 256 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			e := startLinkServer(t, GatewayLinkOptions{MaxBatchBytes: tc.maxBytes})
			l := e.open()
			ev := recvAll(l)
			big := make([]byte, 1<<20)
			for i := range big {
				big[i] = byte(i)
			}
			other, err := l.AddRead(e.iteratorFor(topicAfterStore(e, "o", "other/t"), 0), 100)
			if err != nil {
				t.Fatal(err)
			}
			if b := ev.batch(t); b.GetEntryId() != other {
				t.Fatalf("other entry: %v", b)
			}
			e.store("p", "big/t", []byte("s0"))
			id, err := l.AddRead(e.iteratorFor("big/t", 0), 100)
			if err != nil {
				t.Fatal(err)
			}
			e.store("p", "big/t", []byte("s1"))
			e.store("p", "big/t", big)
			e.store("p", "big/t", []byte("s2"))
			e.store("o", "other/t", []byte("still here"))
			var got [][]byte
			sawOther := false
			for len(got) < 4 || !sawOther {
				b := ev.batch(t)
				if b.GetEntryId() == other {
					sawOther = sawOther || string(b.GetMessages()[0].GetMessage().GetPayload()) == "still here"
					if err := l.Ack(other, b.GetBatchSeq()); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if b.GetEntryId() != id {
					t.Fatalf("batch of entry %d", b.GetEntryId())
				}
				if tc.maxBytes > 0 && len(b.GetMessages()) > 1 {
					for _, m := range b.GetMessages() {
						if len(m.GetMessage().GetPayload()) > tc.maxBytes {
							t.Fatalf("oversized message not alone in its batch (%d messages)", len(b.GetMessages()))
						}
					}
				}
				for _, m := range b.GetMessages() {
					got = append(got, m.GetMessage().GetPayload())
				}
				if err := l.Ack(id, b.GetBatchSeq()); err != nil {
					t.Fatal(err)
				}
			}
			if string(got[0]) != "s0" || string(got[1]) != "s1" || len(got[2]) != len(big) || string(got[2][:100]) != string(big[:100]) || string(got[3]) != "s2" {
				t.Fatalf("messages out of order or damaged")
			}
		})
	}
}

// topicAfterStore stores one message so that topic has a stream.
func topicAfterStore(e *linkEnv, clientID, topic string) string {
	e.store(clientID, topic, []byte("x"))
	return topic
}

func TestLinkLostStreamRemovesEntries(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	e.store("p", "a/b", []byte("x"))
	l := e.open()
	ev := recvAll(l)
	for i := 0; i < 5; i++ {
		if _, err := l.AddWatch("a/#", -1, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.AddRead(e.iteratorFor("a/b", 1<<62), 10); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		ev.announcement(t)
	}
	eventually(t, "10 live entries", func() bool { return e.srv.link.entries.Load() == 10 })
	l.Close()
	eventually(t, "entries removed", func() bool { return e.srv.link.entries.Load() == 0 && e.srv.link.links.Load() == 0 })
	if err := <-ev.err; status.Code(err) != codes.Canceled {
		t.Fatalf("link end: %v", err)
	}
}

func TestLinkRemoveEndsEntry(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	id, err := l.AddWatch("x/#", -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev.announcement(t)
	if err := l.Remove(id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "entry removed", func() bool { return e.srv.link.entries.Load() == 0 })
	// Removing it again is a no-op; removing an id never used is an error.
	if err := l.Remove(id); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(777); err != nil {
		t.Fatal(err)
	}
	if er := ev.entryError(t); er.GetEntryId() != 777 || codes.Code(er.GetCode()) != codes.NotFound {
		t.Fatalf("remove of an unknown entry: %v", er)
	}
}

// rawLink opens a GatewayLink stream without the client wrapper.
func rawLink(t *testing.T, e *linkEnv) dsdv1.GatewayLinkService_GatewayLinkClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := grpc.NewClient(e.srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s, err := dsdv1.NewGatewayLinkServiceClient(conn).GatewayLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func send(t *testing.T, s dsdv1.GatewayLinkService_GatewayLinkClient, r *dsdv1.GatewayLinkRequest) {
	t.Helper()
	if err := s.Send(r); err != nil {
		t.Fatal(err)
	}
}

func watchReq(id uint64, filter string) *dsdv1.GatewayLinkRequest {
	return &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Watch{Watch: &dsdv1.WatchEntry{EntryId: id, TopicFilter: filter}}}
}

func TestLinkBadRequests(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	s := rawLink(t, e)
	send(t, s, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Hello{Hello: &dsdv1.GatewayHello{GatewayId: "gw", Epoch: 7}}})
	if r, err := s.Recv(); err != nil || r.GetWelcome().GetNShards() != 4 || r.GetWelcome().GetMaxBatchMessages() != DefaultLinkBatchSize {
		t.Fatalf("welcome: %v %v", r, err)
	}
	recv := func() *dsdv1.GatewayLinkResponse {
		t.Helper()
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	send(t, s, watchReq(1, "ok/#"))
	if a := recv().GetAnnouncement(); a.GetEntryId() != 1 || !a.GetInitial() {
		t.Fatalf("announcement %v", a)
	}
	for _, tc := range []struct {
		name  string
		req   *dsdv1.GatewayLinkRequest
		id    uint64
		code  codes.Code
		ended bool
	}{
		{"reused id", watchReq(1, "again/#"), 1, codes.AlreadyExists, false},
		{"bad filter", watchReq(2, "a/#/b"), 2, codes.InvalidArgument, true},
		{"reused id of an ended entry", watchReq(2, "ok/#"), 2, codes.AlreadyExists, true},
		{"bad iterator", &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{EntryId: 3, Iterator: []byte{1, 2, 3}, Window: 10}}}, 3, codes.InvalidArgument, true},
		{"zero window", &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Read{Read: &dsdv1.ReadEntry{EntryId: 4, Iterator: []byte{1}, Window: 0}}}, 4, codes.InvalidArgument, true},
		{"bad shard", &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Watch{Watch: &dsdv1.WatchEntry{EntryId: 5, TopicFilter: "#", Shard: ptr(uint32(9))}}}, 5, codes.InvalidArgument, true},
		{"ack of an unknown entry", &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: &dsdv1.BatchAck{EntryId: 99, BatchSeq: 1}}}, 99, codes.NotFound, true},
	} {
		send(t, s, tc.req)
		er := recv().GetError()
		if er.GetEntryId() != tc.id || codes.Code(er.GetCode()) != tc.code || er.GetEntryEnded() != tc.ended {
			t.Errorf("%s: error event %v, want entry %d code %v ended %v", tc.name, er, tc.id, tc.code, tc.ended)
		}
	}
	// Entry 1 lives on: a new stream is still announced to it.
	e.store("p", "ok/now", []byte("x"))
	if a := recv().GetAnnouncement(); a.GetEntryId() != 1 || len(a.GetStreams()) != 1 {
		t.Fatalf("entry 1 after errors: %v", a)
	}
	// A protocol violation ends the stream.
	send(t, s, &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Hello{Hello: &dsdv1.GatewayHello{}}})
	for {
		_, err := s.Recv()
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("second hello: %v", err)
			}
			break
		}
	}
	eventually(t, "entries removed", func() bool { return e.srv.link.entries.Load() == 0 })
}

func ptr[T any](v T) *T { return &v }

func TestLinkHelloFirst(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	s := rawLink(t, e)
	send(t, s, watchReq(1, "#"))
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no hello first: %v", err)
	}
}

func TestLinkEndOfStreamAndDroppedGeneration(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	shard := e.db.ShardOf("p")
	for _, p := range []string{"1", "2", "3"} {
		e.store("p", "g/a", []byte(p))
		e.store("p", "g/b", []byte(p))
	}
	// Entry a reads to the end of generation 1; entry b holds a window of
	// 1 unacked when generation 1 is dropped.
	ida, err := l.AddRead(e.iteratorFor("g/a", 0), 100)
	if err != nil {
		t.Fatal(err)
	}
	if b := ev.batch(t); b.GetEntryId() != ida || len(b.GetMessages()) != 3 || b.GetEndOfStream() {
		t.Fatalf("entry a: %v", b)
	}
	idb, err := l.AddRead(e.iteratorFor("g/b", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	bb := ev.batch(t)
	if bb.GetEntryId() != idb || len(bb.GetMessages()) != 1 {
		t.Fatalf("entry b: %v", bb)
	}
	if _, err := e.db.AddGeneration(shard); err != nil {
		t.Fatal(err)
	}
	// Generation 1 is no longer current: entry a gets end_of_stream.
	if b := ev.batch(t); b.GetEntryId() != ida || !b.GetEndOfStream() || len(b.GetMessages()) != 0 {
		t.Fatalf("entry a end: %v", b)
	}
	if err := e.db.DropGeneration(shard, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(idb, bb.GetBatchSeq()); err != nil {
		t.Fatal(err)
	}
	er := ev.entryError(t)
	if er.GetEntryId() != idb || codes.Code(er.GetCode()) != codes.NotFound || !er.GetEntryEnded() {
		t.Fatalf("dropped generation: %v", er)
	}
	eventually(t, "entries ended", func() bool { return e.srv.link.entries.Load() == 0 })
	// The link goes on: a late ack of the ended entry is ignored, and a new
	// entry works.
	if err := l.Ack(ida, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddWatch("g/#", -1, 0); err != nil {
		t.Fatal(err)
	}
	if a := ev.announcement(t); !a.GetInitial() || len(a.GetStreams()) != 0 {
		t.Fatalf("watch after drop: %v", a)
	}
}

func TestLinkServerStopEndsLinks(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	ev := recvAll(l)
	if _, err := l.AddWatch("#", -1, 0); err != nil {
		t.Fatal(err)
	}
	ev.announcement(t)
	start := time.Now()
	e.stop()
	select {
	case err := <-ev.err:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("link end at server stop: %v", err)
		}
	case <-time.After(eventTimeout):
		t.Fatal("the link outlived the server")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stop took %v (the link held up graceful stop)", d)
	}
}

func TestLinkDBClosedEndsEntries(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	e.store("p", "c/t", []byte("x"))
	l := e.open()
	ev := recvAll(l)
	wid, err := l.AddWatch("c/#", -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev.announcement(t)
	rid, err := l.AddRead(e.iteratorFor("c/t", 1<<62), 10)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "2 live entries", func() bool { return e.srv.link.entries.Load() == 2 })
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	ended := map[uint64]bool{}
	for len(ended) < 2 {
		er := ev.entryError(t)
		if codes.Code(er.GetCode()) != codes.Unavailable || !er.GetEntryEnded() {
			t.Fatalf("entry error at close: %v", er)
		}
		ended[er.GetEntryId()] = true
	}
	if !ended[wid] || !ended[rid] {
		t.Fatalf("ended entries %v", ended)
	}
	eventually(t, "entries ended", func() bool { return e.srv.link.entries.Load() == 0 })
}

// TestLinkBatchAcks: dsd's welcome offers BatchAcks, and one request of
// several acks releases each entry's window as the acks one by one would;
// a bad ack among them is answered alone and the others still apply.
func TestLinkBatchAcks(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{})
	l := e.open()
	if !l.Welcome.GetBatchAcks() {
		t.Fatal("welcome without batch_acks")
	}
	ev := recvAll(l)
	for _, topic := range []string{"ba/1", "ba/2"} {
		for i := range 4 {
			e.store("p", topic, []byte(fmt.Sprint(i)))
		}
	}
	ids := map[uint64]string{}
	for _, topic := range []string{"ba/1", "ba/2"} {
		id, err := l.AddReadBatch(e.iteratorFor(topic, 0), 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = topic
	}
	acks := &dsdv1.BatchAcks{}
	got := map[uint64][]string{}
	for range 2 {
		b := ev.batch(t)
		got[b.GetEntryId()] = append(got[b.GetEntryId()], payloads(b)...)
		acks.Acks = append(acks.Acks, &dsdv1.BatchAck{EntryId: b.GetEntryId(), BatchSeq: b.GetBatchSeq()})
	}
	bad := acks.Acks[0].GetEntryId()
	acks.Acks = append(acks.Acks[:1], append([]*dsdv1.BatchAck{{EntryId: bad, BatchSeq: 99}}, acks.Acks[1:]...)...)
	if err := l.Send(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Acks{Acks: acks}}); err != nil {
		t.Fatal(err)
	}
	// The acks before the bad one already released their windows: those
	// entries' next batches may come before the bad ack's error.
	batches, errs := 0, 0
	for batches < 2 || errs < 1 {
		r := ev.next(t)
		switch {
		case r.GetBatch() != nil:
			b := r.GetBatch()
			got[b.GetEntryId()] = append(got[b.GetEntryId()], payloads(b)...)
			batches++
		case r.GetError() != nil:
			if er := r.GetError(); er.GetEntryId() != bad || codes.Code(er.GetCode()) != codes.InvalidArgument || er.GetEntryEnded() || errs > 0 {
				t.Fatalf("bad ack among the acks: %v", er)
			}
			errs++
		default:
			t.Fatalf("want batches and one entry error, got %v", r)
		}
	}
	for id, topic := range ids {
		if !slices.Equal(got[id], []string{"0", "1", "2", "3"}) {
			t.Fatalf("entry %d (%s) got %v, want its 4 messages in two windows", id, topic, got[id])
		}
	}
}
