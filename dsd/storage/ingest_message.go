package storage

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Field numbers of strata.storage.v1.Message and MessageProperties that the
// ingest path reads or appends without unmarshalling the message.
const (
	fieldTopic      protowire.Number = 1
	fieldPayload    protowire.Number = 2
	fieldQoS        protowire.Number = 3
	fieldRetain     protowire.Number = 4
	fieldPublisher  protowire.Number = 5
	fieldTimestamp  protowire.Number = 6
	fieldProperties protowire.Number = 7
)

// IngestMessage is a message as it arrives to be stored: its encoded
// strata.storage.v1.Message, and the fields the engine reads from it. The
// stored value is Encoded itself with the publisher and the timestamp
// appended (a later field of the same number wins in protobuf), so a
// message is never unmarshalled and marshalled again on its way to disk.
type IngestMessage struct {
	Encoded []byte
	Topic   string
	QoS     uint32
	Retain  bool
}

// ParseIngestMessage checks that b is a well-formed strata.storage.v1.Message
// that readers will decode (known fields of the right wire types, valid
// UTF-8 strings, well-formed properties) and returns it with its topic, QoS
// and retain flag. b is kept, not copied. Topic names and sizes are checked
// by the Store that takes it.
func ParseIngestMessage(b []byte) (IngestMessage, error) {
	m := IngestMessage{Encoded: b}
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch num {
		case fieldTopic:
			if typ != protowire.BytesType || !utf8.Valid(v) {
				return errBadField("topic")
			}
			m.Topic = string(v)
		case fieldPayload:
			if typ != protowire.BytesType {
				return errBadField("payload")
			}
		case fieldQoS:
			if typ != protowire.VarintType || x > 2 {
				return errBadField("qos")
			}
			m.QoS = uint32(x)
		case fieldRetain:
			if typ != protowire.VarintType || x > 1 {
				return errBadField("retain")
			}
			m.Retain = x == 1
		case fieldPublisher:
			if typ != protowire.BytesType || !utf8.Valid(v) {
				return errBadField("publisher_client_id")
			}
		case fieldTimestamp:
			if typ != protowire.VarintType {
				return errBadField("timestamp_us")
			}
		case fieldProperties:
			if typ != protowire.BytesType {
				return errBadField("properties")
			}
			return checkProperties(v)
		default:
			return fmt.Errorf("%w: message: unknown field %d", ErrInvalidArgument, num)
		}
		return nil
	})
	return m, err
}

// IngestMessageOf encodes m for a Store: the ingest form of a message built
// in memory (dstool, services, tests), without its publisher and timestamp.
func IngestMessageOf(m *storagev1.Message) IngestMessage {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&storagev1.Message{
		Topic: m.Topic, Payload: m.Payload, Qos: m.Qos, Retain: m.Retain, Properties: m.Properties,
	})
	if err != nil {
		// Invariant: marshalling a well-formed in-memory message cannot fail.
		panic(fmt.Sprintf("storage: marshal message: %v", err))
	}
	return IngestMessage{Encoded: b, Topic: m.Topic, QoS: m.Qos, Retain: m.Retain}
}

// ingestMessagesOf encodes the messages of a Store built in memory.
func ingestMessagesOf(msgs []*storagev1.Message) ([]IngestMessage, error) {
	in := make([]IngestMessage, len(msgs))
	for i, m := range msgs {
		if m == nil {
			return nil, fmt.Errorf("%w: store: message %d is nil", ErrInvalidArgument, i)
		}
		in[i] = IngestMessageOf(m)
	}
	return in, nil
}

// storedValue is the value stored for m: the value version, the message as
// it arrived, then the publisher and the timestamp.
func (m IngestMessage) storedValue(clientID string, ts int64) []byte {
	b := make([]byte, 0, 1+len(m.Encoded)+len(clientID)+16)
	b = append(b, valueVersion1)
	b = append(b, m.Encoded...)
	b = protowire.AppendTag(b, fieldPublisher, protowire.BytesType)
	b = protowire.AppendString(b, clientID)
	b = protowire.AppendTag(b, fieldTimestamp, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(ts))
}

func errBadField(name string) error {
	return fmt.Errorf("%w: message: malformed field %s", ErrInvalidArgument, name)
}

// walkFields calls f for every field of the encoded message b: v holds a
// length-delimited field's bytes, x a varint's value.
func walkFields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: message: %w", ErrInvalidArgument, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("%w: message: field %d has wire type %d", ErrInvalidArgument, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("%w: message: field %d: %w", ErrInvalidArgument, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// checkProperties checks an encoded strata.storage.v1.MessageProperties.
func checkProperties(b []byte) error {
	return walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case (num == 1 || num == 2) && typ == protowire.VarintType:
		case (num == 3 || num == 4) && typ == protowire.BytesType && utf8.Valid(v):
		case num == 5 && typ == protowire.BytesType:
		case num == 6 && typ == protowire.BytesType:
			return walkFields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if (num != 1 && num != 2) || typ != protowire.BytesType || !utf8.Valid(v) {
					return errBadField("properties.user_properties")
				}
				return nil
			})
		default:
			return errBadField("properties")
		}
		return nil
	})
}
