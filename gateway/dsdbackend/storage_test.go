package dsdbackend

import (
	"context"
	"errors"
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

type fakeStorage struct {
	dsdv1.StorageServiceClient
	got *dsdv1.StoreRequest
	err error
}

func (f *fakeStorage) Store(ctx context.Context, in *dsdv1.StoreRequest, _ ...grpc.CallOption) (*dsdv1.StoreResponse, error) {
	f.got = in
	if f.err != nil {
		return nil, f.err
	}
	return &dsdv1.StoreResponse{Result: dsdv1.StoreResult_STORE_RESULT_DUPLICATE}, nil
}

type fakeRelease struct {
	dsdv1.SessionServiceClient
	got *dsdv1.ReleaseRequest
}

func (f *fakeRelease) Release(ctx context.Context, in *dsdv1.ReleaseRequest, _ ...grpc.CallOption) (*dsdv1.ReleaseResponse, error) {
	f.got = in
	return &dsdv1.ReleaseResponse{Released: true}, nil
}

// Store sends the producer (epoch = guard), the QoS 2 packet ids and the
// message properties; DUPLICATE is success. Release carries the guard.
func TestStorageStoreRelease(t *testing.T) {
	st, ss := &fakeStorage{}, &fakeRelease{}
	s := NewStorage(st, ss, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: context.Background()}}, Options{})
	var props packet.Properties
	props.Present.Add(packet.PropMessageExpiryInterval)
	props.MessageExpiryInterval = 60
	props.Present.Add(packet.PropContentType)
	props.ContentType = "text/plain"
	err := s.Store(context.Background(), session.StoreRequest{
		ClientID: "c1", Guard: 9, FirstSeq: 3,
		Messages: []session.Message{
			{Topic: "a", Payload: []byte("1"), QoS: 1, Retain: true, Properties: props},
			{Topic: "b", Payload: []byte("2"), QoS: 2},
		},
		QoS2PacketIDs: []uint16{0, 17},
	})
	if err != nil {
		t.Fatal(err)
	}
	expiry := uint32(60)
	want := &dsdv1.StoreRequest{
		ClientId: "c1",
		Messages: []*storagev1.Message{
			{Topic: "a", Payload: []byte("1"), Qos: 1, Retain: true, PublisherClientId: "c1",
				Properties: &storagev1.MessageProperties{MessageExpiryInterval: &expiry, ContentType: "text/plain"}},
			{Topic: "b", Payload: []byte("2"), Qos: 2, PublisherClientId: "c1"},
		},
		Producer: &dsdv1.Producer{ClientId: "c1", Epoch: 9, FirstSeq: 3, Qos2PacketIds: []uint32{0, 17}},
	}
	if !proto.Equal(st.got, want) {
		t.Fatalf("Store request:\n%v\nwant\n%v", st.got, want)
	}
	released, err := s.Release(context.Background(), session.ReleaseRequest{ClientID: "c1", Guard: 9, PacketID: 17})
	if err != nil || !released {
		t.Fatalf("Release: %v, %v", released, err)
	}
	if ss.got.GetGuard() != 9 || ss.got.GetPacketId() != 17 || ss.got.GetClientId() != "c1" {
		t.Fatalf("Release request %v", ss.got)
	}
	st.err = status.Error(codes.FailedPrecondition, "stale epoch")
	if err := s.Store(context.Background(), session.StoreRequest{ClientID: "c1", Guard: 8, FirstSeq: 1, Messages: []session.Message{{Topic: "a"}}}); !errors.Is(err, session.ErrStaleGuard) {
		t.Fatalf("stale epoch: %v, want ErrStaleGuard", err)
	}
}

// dsd answers a Store with RESOURCE_EXHAUSTED while its disk is full
// (dsd/server/errors.go): the PUBACK / PUBREC says 0x97 Quota exceeded,
// and the connection stays (not ErrStaleGuard).
func TestStorageDiskFullIsQuotaExceeded(t *testing.T) {
	st := &fakeStorage{err: status.Error(codes.ResourceExhausted, "dsd: disk full: 1024 bytes free under the watermark 268435456 on /var/lib/strata")}
	s := NewStorage(st, &fakeRelease{}, fixedRegistrar{reg: Registration{GatewayID: "gw", Epoch: 1, Ended: context.Background()}}, Options{})
	err := s.Store(context.Background(), session.StoreRequest{ClientID: "c1", Guard: 1, FirstSeq: 1, Messages: []session.Message{{Topic: "a", QoS: 1}}})
	if !errors.Is(err, session.ErrQuotaExceeded) || errors.Is(err, session.ErrStaleGuard) {
		t.Fatalf("Store: %v, want ErrQuotaExceeded", err)
	}
	if code := session.StoreCode(err); code != packet.QuotaExceeded || byte(code) != 0x97 {
		t.Fatalf("PUBACK code 0x%02X, want 0x97", byte(code))
	}
}
