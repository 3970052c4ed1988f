package client

import (
	"context"
	"net"
	"slices"
	"sort"
	"testing"

	"google.golang.org/grpc"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// fakeSite serves MatchRetained with shards from fixed records, one page
// of at most limit topics (as dsd: per topic the greatest record among the
// asked shards, tombstones included).
type fakeSite struct {
	dsdv1.UnimplementedRetainedServiceServer
	recs map[uint32]map[string]*storagev1.RetainedRecord // shard -> topic -> record
}

func (f *fakeSite) MatchRetained(ctx context.Context, req *dsdv1.MatchRetainedRequest) (*dsdv1.MatchRetainedResponse, error) {
	best := map[string]*storagev1.RetainedRecord{}
	for _, sh := range req.GetShards() {
		for topic, r := range f.recs[sh] {
			if b := best[topic]; b == nil || b.GetTimestampUs() < r.GetTimestampUs() {
				best[topic] = r
			}
		}
	}
	var topics []string
	for topic := range best {
		if topic > req.GetPageToken() && (req.GetTopicFilter() == "#" || req.GetTopicFilter() == topic) {
			topics = append(topics, topic)
		}
	}
	sort.Strings(topics)
	res := &dsdv1.MatchRetainedResponse{}
	for _, topic := range topics {
		if len(res.Records) == int(req.GetLimit()) {
			res.NextPageToken = res.Records[len(res.Records)-1].Topic
			break
		}
		res.Records = append(res.Records, &dsdv1.RetainedEntry{Topic: topic, Record: best[topic]})
	}
	return res, nil
}

func startFake(t *testing.T, f *fakeSite) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	dsdv1.RegisterRetainedServiceServer(s, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	c, err := Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMatchRetainedMerged: two sites lead two shards each; the merge
// returns per topic the record with the greatest order key across them,
// in topic order, over pages of one record, and a tombstone hides an older
// message of another site.
func TestMatchRetainedMerged(t *testing.T) {
	msg := func(ts int64, payload string) *storagev1.RetainedRecord {
		return &storagev1.RetainedRecord{TimestampUs: ts, Message: &storagev1.Message{Payload: []byte(payload)}}
	}
	tomb := func(ts int64) *storagev1.RetainedRecord { return &storagev1.RetainedRecord{TimestampUs: ts} }
	a := startFake(t, &fakeSite{recs: map[uint32]map[string]*storagev1.RetainedRecord{
		0: {"t/1": msg(5, "a0-old"), "t/2": msg(9, "a0-new"), "t/4": msg(3, "a0-only")},
		1: {"t/3": tomb(8), "t/5": msg(1, "a1-old")},
	}})
	b := startFake(t, &fakeSite{recs: map[uint32]map[string]*storagev1.RetainedRecord{
		2: {"t/1": msg(6, "b2-new"), "t/2": msg(2, "b2-old"), "t/3": msg(7, "b2-hidden")},
		3: {"t/5": tomb(4), "t/6": msg(1, "b3-only")},
	}})
	sources := []RetainedSource{{Client: a, Shards: []uint32{0, 1}}, {Client: b, Shards: []uint32{2, 3}}}
	var got []string
	err := MatchRetainedMerged(context.Background(), sources, "#", 1, func(m *storagev1.Message) error {
		got = append(got, string(m.GetPayload()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b2-new", "a0-new", "a0-only", "b3-only"}; !slices.Equal(got, want) {
		t.Fatalf("merged %q, want %q", got, want)
	}
	rec, err := RetainedRecordMerged(context.Background(), sources, "t/3")
	if err != nil || rec.GetMessage() != nil || rec.GetTimestampUs() != 8 {
		t.Fatalf("t/3: %v %v, want the tombstone at 8", rec, err)
	}
	if rec, err := RetainedRecordMerged(context.Background(), sources, "t/9"); err != nil || rec != nil {
		t.Fatalf("t/9: %v %v, want none", rec, err)
	}
}
