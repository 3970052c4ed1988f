package storage

import (
	"fmt"

	"google.golang.org/protobuf/proto"
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
