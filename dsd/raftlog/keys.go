package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Prefix is the site-wide keyspace of raft state: shard id FF FF (site
// keys) and tag 30. dsd/storage reserves it; the values never change.
var Prefix = []byte{0xFF, 0xFF, 0x30}

// Sub-keys of a group, after Prefix | group.
const (
	subHardState byte = 0x01
	subConfState byte = 0x02
	subSnapshot  byte = 0x03
	subTruncated byte = 0x04
	subEntry     byte = 0x05
)

// valueVersion1 is the first byte of every value.
const valueVersion1 byte = 1

// ErrCorrupt marks a stored value this package cannot decode.
var ErrCorrupt = errors.New("raftlog: corrupt value")

func groupPrefix(group uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), Prefix...), group)
}

func groupKey(group uint64, sub byte) []byte {
	return append(groupPrefix(group), sub)
}

func entryKey(group, index uint64) []byte {
	return binary.BigEndian.AppendUint64(groupKey(group, subEntry), index)
}

func encode(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		// Invariant: raftpb messages always marshal.
		panic(fmt.Sprintf("raftlog: marshal %T: %v", m, err))
	}
	return append([]byte{valueVersion1}, b...)
}

func decode(key, v []byte, m proto.Message) error {
	if len(v) == 0 || v[0] != valueVersion1 {
		return fmt.Errorf("%w: key %x: bad version", ErrCorrupt, key)
	}
	if err := proto.Unmarshal(v[1:], m); err != nil {
		return fmt.Errorf("%w: key %x: %w", ErrCorrupt, key, err)
	}
	return nil
}

func encodeTruncated(index, term uint64) []byte {
	b := []byte{valueVersion1}
	b = binary.BigEndian.AppendUint64(b, index)
	return binary.BigEndian.AppendUint64(b, term)
}

func decodeTruncated(key, v []byte) (index, term uint64, err error) {
	if len(v) != 17 || v[0] != valueVersion1 {
		return 0, 0, fmt.Errorf("%w: key %x: bad truncated record", ErrCorrupt, key)
	}
	return binary.BigEndian.Uint64(v[1:]), binary.BigEndian.Uint64(v[9:]), nil
}
