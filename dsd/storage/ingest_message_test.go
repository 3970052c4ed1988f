package storage

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// ParseIngestMessage takes what readers can decode and reads topic, QoS and
// retain from it; anything else is ErrInvalidArgument. The stored value
// decodes to the message with dsd's publisher and timestamp.
func TestParseIngestMessage(t *testing.T) {
	full := &storagev1.Message{Topic: "a/b", Payload: []byte("p"), Qos: 2, Retain: true,
		Properties: &storagev1.MessageProperties{ContentType: "c", UserProperties: []*storagev1.UserProperty{{Key: "k", Value: "v"}}}}
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseIngestMessage(b)
	if err != nil || m.Topic != "a/b" || m.QoS != 2 || !m.Retain {
		t.Fatalf("parsed %+v, %v", m, err)
	}
	got := &storagev1.Message{}
	if err := decodeValue([]byte("k"), m.storedValue("pub", 77), got); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(full).(*storagev1.Message)
	want.PublisherClientId, want.TimestampUs = "pub", 77
	if !proto.Equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}

	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	bad := map[string][]byte{
		"truncated":           b[:len(b)-1],
		"qos 3":               protowire.AppendVarint(tag(3, protowire.VarintType), 3),
		"topic as varint":     protowire.AppendVarint(tag(1, protowire.VarintType), 1),
		"topic not utf-8":     protowire.AppendBytes(tag(1, protowire.BytesType), []byte{0xff}),
		"unknown field":       protowire.AppendVarint(tag(9, protowire.VarintType), 1),
		"fixed64":             protowire.AppendFixed64(tag(2, protowire.Fixed64Type), 1),
		"bad properties":      protowire.AppendBytes(tag(7, protowire.BytesType), []byte{0xff}),
		"bad user properties": protowire.AppendBytes(tag(7, protowire.BytesType), protowire.AppendBytes(tag(6, protowire.BytesType), protowire.AppendVarint(tag(1, protowire.VarintType), 1))),
	}
	for name, in := range bad {
		if _, err := ParseIngestMessage(in); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

// FuzzParseIngestMessage: whatever ParseIngestMessage accepts, a reader
// decodes, with the same topic, QoS and retain flag.
func FuzzParseIngestMessage(f *testing.F) {
	b, _ := proto.Marshal(&storagev1.Message{Topic: "a/b", Payload: []byte("p"), Qos: 1, Properties: &storagev1.MessageProperties{ContentType: "c"}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseIngestMessage(in)
		if err != nil {
			return
		}
		got := &storagev1.Message{}
		if err := decodeValue([]byte("k"), m.storedValue("c", 1), got); err != nil {
			t.Fatalf("accepted %x but a reader fails: %v", in, err)
		}
		if got.Topic != m.Topic || got.Qos != m.QoS || got.Retain != m.Retain || got.TimestampUs != 1 {
			t.Fatalf("parsed %+v, reader sees %v", m, got)
		}
	})
}
