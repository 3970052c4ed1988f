package dsdbackend

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

type fakeRelease struct {
	dsdv1.SessionServiceClient
	got *dsdv1.ReleaseRequest
	err error
}

func (f *fakeRelease) Release(ctx context.Context, in *dsdv1.ReleaseRequest, _ ...grpc.CallOption) (*dsdv1.ReleaseResponse, error) {
	f.got = in
	if f.err != nil {
		return nil, f.err
	}
	return &dsdv1.ReleaseResponse{Released: true}, nil
}

// noIngest is a StorageService without an ingest stream: opening one waits
// for the Ingest to close. (A nil client panicked when the Ingest's
// goroutine got to open its stream before the test closed it.)
type noIngest struct{ dsdv1.StorageServiceClient }

func (noIngest) Ingest(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[dsdv1.IngestRequest, dsdv1.IngestResponse], error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Release carries the guard; a stale epoch is ErrStaleGuard.
func TestStorageRelease(t *testing.T) {
	ss := &fakeRelease{}
	s := NewStorage(noIngest{}, ss, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: context.Background()}}, Options{}, IngestOptions{})
	defer s.Close()
	released, err := s.Release(context.Background(), session.ReleaseRequest{ClientID: "c1", Guard: 9, PacketID: 17})
	if err != nil || !released {
		t.Fatalf("Release: %v, %v", released, err)
	}
	if ss.got.GetGuard() != 9 || ss.got.GetPacketId() != 17 || ss.got.GetClientId() != "c1" {
		t.Fatalf("Release request %v", ss.got)
	}
	ss.err = status.Error(codes.FailedPrecondition, "stale epoch")
	if _, err := s.Release(context.Background(), session.ReleaseRequest{ClientID: "c1", Guard: 8, PacketID: 1}); !errors.Is(err, session.ErrStaleGuard) {
		t.Fatalf("stale epoch: %v, want ErrStaleGuard", err)
	}
}

// encodeMessage writes what dsd stores: the PUBLISH's topic, payload, QoS,
// retain flag and properties, as a strata.storage.v1.Message.
func TestEncodeMessage(t *testing.T) {
	var props packet.Properties
	props.Present.Add(packet.PropMessageExpiryInterval)
	props.MessageExpiryInterval = 60
	props.Present.Add(packet.PropContentType)
	props.ContentType = "text/plain"
	props.UserProperties = []packet.UserProperty{{Key: "k", Value: "v"}}
	for _, m := range []session.Message{
		{Topic: "a", Payload: []byte("1"), QoS: 1, Retain: true, Properties: props},
		{Topic: "b/c", Payload: []byte("2"), QoS: 2},
		{Topic: "d"},
	} {
		got := &storagev1.Message{}
		if err := proto.Unmarshal(encodeMessage(&m), got); err != nil {
			t.Fatal(err)
		}
		want := &storagev1.Message{Topic: m.Topic, Payload: m.Payload, Qos: uint32(m.QoS), Retain: m.Retain, Properties: propertiesToProto(&m.Properties)}
		if !proto.Equal(got, want) {
			t.Fatalf("encoded %v\nwant %v", got, want)
		}
	}
}

// dsd answers a Store with RESOURCE_EXHAUSTED while its disk is full
// (dsd/server/errors.go; on the ingest stream, as the failure's code): the
// PUBACK / PUBREC says 0x97 Quota exceeded, and the connection stays (not
// ErrStaleGuard).
func TestStorageDiskFullIsQuotaExceeded(t *testing.T) {
	f, g := startIngest(t, held, IngestOptions{})
	s := f.next(t)
	results := make(chan result, 1)
	submit(g, results, "a1", store("a", 1, "t/1"))
	got := s.take(t, 1)
	s.answers <- &dsdv1.IngestResponse{Failed: []*dsdv1.IngestFailure{{Id: got[0].GetId(), Code: uint32(codes.ResourceExhausted),
		Message: "dsd: disk full: 1024 bytes free under the watermark 268435456 on /var/lib/strata"}}}
	err := wantResults(t, results, "a1")[0]
	if !errors.Is(err, session.ErrQuotaExceeded) || errors.Is(err, session.ErrStaleGuard) {
		t.Fatalf("Store: %v, want ErrQuotaExceeded", err)
	}
	if code := session.StoreCode(err); code != packet.QuotaExceeded || byte(code) != 0x97 {
		t.Fatalf("PUBACK code 0x%02X, want 0x97", byte(code))
	}
	if !strings.Contains(err.Error(), "dsd: disk full") {
		t.Fatalf("the reason is lost: %v", err)
	}
}
