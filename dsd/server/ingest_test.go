package server

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func encoded(t *testing.T, m *storagev1.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The ingest stream stores what it is sent, answers every Store by id
// (a resent Store as stored again: DUPLICATE), refuses malformed messages
// and Stores without a producer with INVALID_ARGUMENT, and a sequence gap
// with FAILED_PRECONDITION; the stored messages read back with the
// publisher and a timestamp set by dsd.
func TestIngestStream(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	stream, err := c.Storage.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m1 := encoded(t, &storagev1.Message{Topic: "fleet/car1/speed", Payload: []byte("42"), Qos: 1})
	m2 := encoded(t, &storagev1.Message{Topic: "fleet/car2/speed", Payload: []byte("7"), Qos: 1,
		Properties: &storagev1.MessageProperties{ContentType: "text/plain"}})
	// A publisher id and timestamp sent along are replaced by dsd's.
	m3 := encoded(t, &storagev1.Message{Topic: "fleet/car1/speed", Payload: []byte("43"), Qos: 1, PublisherClientId: "liar", TimestampUs: 1})
	prod := func(seq uint64) *dsdv1.Producer { return &dsdv1.Producer{Epoch: 1, FirstSeq: seq} }
	send := func(stores ...*dsdv1.IngestStore) {
		t.Helper()
		if err := stream.Send(&dsdv1.IngestRequest{Stores: stores}); err != nil {
			t.Fatal(err)
		}
	}
	send(
		&dsdv1.IngestStore{Id: 1, ClientId: "car1", Producer: prod(1), Messages: [][]byte{m1}},
		&dsdv1.IngestStore{Id: 2, ClientId: "car2", Producer: prod(1), Messages: [][]byte{m2}},
		&dsdv1.IngestStore{Id: 3, ClientId: "car1", Producer: prod(2), Messages: [][]byte{m3}},
		&dsdv1.IngestStore{Id: 4, ClientId: "car1", Producer: prod(2), Messages: [][]byte{m3}}, // resent: DUPLICATE
		&dsdv1.IngestStore{Id: 5, ClientId: "car3", Producer: prod(1), Messages: [][]byte{{0xff, 0x01}}},
		&dsdv1.IngestStore{Id: 6, ClientId: "car3", Messages: [][]byte{m1}},
		&dsdv1.IngestStore{Id: 7, ClientId: "car2", Producer: prod(5), Messages: [][]byte{m2}},
	)
	stored := map[uint64]bool{}
	failed := map[uint64]codes.Code{}
	for len(stored)+len(failed) < 7 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range resp.GetStored() {
			stored[id] = true
		}
		for _, f := range resp.GetFailed() {
			failed[f.GetId()] = codes.Code(f.GetCode())
		}
	}
	for _, id := range []uint64{1, 2, 3, 4} {
		if !stored[id] {
			t.Errorf("store %d not stored (failed: %v)", id, failed[id])
		}
	}
	for id, code := range map[uint64]codes.Code{5: codes.InvalidArgument, 6: codes.InvalidArgument, 7: codes.FailedPrecondition} {
		if failed[id] != code {
			t.Errorf("store %d: %v, want %v", id, failed[id], code)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadAll(ctx, "fleet/+/speed", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read back %d messages, want 3: %v", len(got), got)
	}
	for _, sm := range got {
		m := sm.GetMessage()
		want := map[string]string{"42": "car1", "43": "car1", "7": "car2"}[string(m.GetPayload())]
		if m.GetPublisherClientId() != want || m.GetTimestampUs() < 1000 {
			t.Errorf("message %v: publisher %q, want %q, and a dsd timestamp", m, m.GetPublisherClientId(), want)
		}
		if string(m.GetPayload()) == "7" && m.GetProperties().GetContentType() != "text/plain" {
			t.Errorf("properties lost: %v", m)
		}
	}
}
