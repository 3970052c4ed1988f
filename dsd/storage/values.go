package storage

import (
	"fmt"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// encodeValue frames a protobuf message as a stored value: the version byte,
// then the deterministic protobuf encoding.
func encodeValue(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend([]byte{valueVersion1}, m)
	if err != nil {
		// Invariant: marshalling a well-formed in-memory message cannot fail.
		panic(fmt.Sprintf("storage: marshal %T: %v", m, err))
	}
	return b
}

// decodeValue parses a stored value into m. A wrong version or bad protobuf
// bytes are corruption: the engine wrote this value itself.
func decodeValue(key, v []byte, m proto.Message) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: key %s: empty value", ErrCorruption, prettyKey(key))
	}
	if v[0] != valueVersion1 {
		return fmt.Errorf("%w: key %s: unknown value version %d", ErrCorruption, prettyKey(key), v[0])
	}
	if err := proto.Unmarshal(v[1:], m); err != nil {
		return fmt.Errorf("%w: key %s: %w", ErrCorruption, prettyKey(key), err)
	}
	return nil
}

// readValue turns a message's stored value v, which an iterator returned
// (valid until it moves), into an Entry without its Key, and returns the
// message's topic: decoded into Entry.Message, or with stored copied into
// Entry.Value (Limit.StoredValues), of which only the topic is read.
func readValue(key, v []byte, stored bool) (Entry, string, error) {
	if !stored {
		m := &storagev1.Message{}
		if err := decodeValue(key, v, m); err != nil {
			return Entry{}, "", err
		}
		return Entry{Message: m}, m.Topic, nil
	}
	cp := append([]byte(nil), v...)
	topic, err := storedTopic(key, cp)
	if err != nil {
		return Entry{}, "", err
	}
	// The topic is read in place: cp is not written after this.
	return Entry{Value: cp[1:]}, unsafe.String(unsafe.SliceData(topic), len(topic)), nil
}

// storedTopic returns the topic of a stored message value (field 1 of
// storagev1.Message; the deterministic encoding puts it first) without
// decoding the rest. Like decodeValue, a malformed value is corruption.
func storedTopic(key, v []byte) ([]byte, error) {
	if len(v) == 0 || v[0] != valueVersion1 {
		m := &storagev1.Message{}
		return nil, decodeValue(key, v, m) // the error it reports
	}
	b := v[1:]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			topic, n := protowire.ConsumeBytes(b)
			if n < 0 {
				break
			}
			return topic, nil
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			break
		}
		b = b[n:]
	}
	if len(b) == 0 {
		return nil, nil // no topic field: the empty topic (proto3 omits it)
	}
	return nil, fmt.Errorf("%w: key %s: bad message encoding", ErrCorruption, prettyKey(key))
}

// matchStoredTopic is lts.MatchTopic for a topic in stored bytes, without
// a copy: MatchTopic keeps no reference to its arguments.
func matchStoredTopic(filter string, topic []byte) bool {
	return lts.MatchTopic(filter, unsafe.String(unsafe.SliceData(topic), len(topic)))
}
