package lts

import (
	"encoding/binary"
	"fmt"
)

// MaxIndexLevel is the largest varying-level number an index key can hold
// (2 bytes). A topic name is at most 65535 bytes, so it has at most 32768
// levels, and a stream never has more varying levels than that.
const MaxIndexLevel = 0xFFFF

// TimeLayout is the wildcard_optimized_v2 key layout of one generation:
// time-first keys, one data key per message plus one index key per varying
// level, so that a stream's messages sort by timestamp whatever their
// topics. All integers are big-endian:
//
//	data key:  static (TopicIndexBytes) | ts (8)
//	index key: static (TopicIndexBytes) | n (2) | hash(v_n) (BitsPerTopicLevel/8) | ts (8)
//
// n is the varying level's position among the stream's varying levels,
// from 1; hash(v_n) is the first BitsPerTopicLevel/8 bytes of
// HashLevel(v_n). The caller keeps data and index keys apart (dsd puts them
// under different prefixes) and gives index keys empty values. Because a
// key's time is its last 8 bytes and everything before it is fixed per
// (stream, level, value), the keys of one list are in timestamp order, and
// a reader can merge-join the lists of several levels on ts. Timestamps
// must be unique per stream.
//
// EpochBits is not used. A TimeLayout is immutable and safe for concurrent
// use.
type TimeLayout struct {
	cfg Config
}

// NewTimeLayout returns the time-first layout for cfg (it uses
// BitsPerTopicLevel and TopicIndexBytes, but validates all of cfg).
func NewTimeLayout(cfg Config) (*TimeLayout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &TimeLayout{cfg: cfg.Clone()}, nil
}

// Config returns a copy of the layout's configuration.
func (l *TimeLayout) Config() Config { return l.cfg.Clone() }

// DataKeyLen is the length of a data key.
func (l *TimeLayout) DataKeyLen() int { return l.cfg.TopicIndexBytes + 8 }

// IndexKeyLen is the length of an index key.
func (l *TimeLayout) IndexKeyLen() int {
	return l.cfg.TopicIndexBytes + 2 + l.cfg.BitsPerTopicLevel/8 + 8
}

// LevelHash is the stored hash of a varying level's value: the
// BitsPerTopicLevel most significant bits of HashLevel(v), right-aligned.
func (l *TimeLayout) LevelHash(v string) uint64 {
	return HashLevel(v) >> uint(64-l.cfg.BitsPerTopicLevel)
}

// AppendDataKey appends the data key of the message of stream static with
// timestamp ts.
func (l *TimeLayout) AppendDataKey(dst []byte, static StateID, ts uint64) []byte {
	dst = appendID(dst, static, l.cfg.TopicIndexBytes)
	return binary.BigEndian.AppendUint64(dst, ts)
}

// AppendIndexPrefix appends the prefix shared by the index keys of varying
// level n (from 1) with stored hash h (LevelHash) in stream static.
func (l *TimeLayout) AppendIndexPrefix(dst []byte, static StateID, n int, h uint64) []byte {
	if n < 1 || n > MaxIndexLevel {
		// Invariant: n counts the varying levels of a learned topic name,
		// at most 32768 (see MaxIndexLevel); callers never pass 0.
		panic(fmt.Sprintf("lts: index level %d out of [1, %d]", n, MaxIndexLevel))
	}
	dst = appendID(dst, static, l.cfg.TopicIndexBytes)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	b := l.cfg.BitsPerTopicLevel / 8
	for i := b - 1; i >= 0; i-- {
		dst = append(dst, byte(h>>(8*uint(i))))
	}
	return dst
}

// AppendIndexKey appends the index key of varying level n (from 1) with
// stored hash h for the message of stream static with timestamp ts.
func (l *TimeLayout) AppendIndexKey(dst []byte, static StateID, n int, h uint64, ts uint64) []byte {
	return binary.BigEndian.AppendUint64(l.AppendIndexPrefix(dst, static, n, h), ts)
}

// DecodeDataKey takes a data key apart. A key of the wrong length is an
// error wrapping ErrCorruption.
func (l *TimeLayout) DecodeDataKey(key []byte) (static StateID, ts uint64, err error) {
	if len(key) != l.DataKeyLen() {
		return 0, 0, fmt.Errorf("%w: data key of %d bytes, expected %d", ErrCorruption, len(key), l.DataKeyLen())
	}
	w := l.cfg.TopicIndexBytes
	return readID(key[:w]), binary.BigEndian.Uint64(key[w:]), nil
}

// IndexKey is an index key taken apart.
type IndexKey struct {
	Static StateID
	// Level is the varying level's number, from 1.
	Level int
	// Hash is the stored hash (LevelHash).
	Hash uint64
	TS   uint64
}

// DecodeIndexKey takes an index key apart. A key of the wrong length or
// with level 0 is an error wrapping ErrCorruption.
func (l *TimeLayout) DecodeIndexKey(key []byte) (IndexKey, error) {
	if len(key) != l.IndexKeyLen() {
		return IndexKey{}, fmt.Errorf("%w: index key of %d bytes, expected %d", ErrCorruption, len(key), l.IndexKeyLen())
	}
	w, b := l.cfg.TopicIndexBytes, l.cfg.BitsPerTopicLevel/8
	k := IndexKey{Static: readID(key[:w]), Level: int(binary.BigEndian.Uint16(key[w:]))}
	if k.Level == 0 {
		return IndexKey{}, fmt.Errorf("%w: index key with level 0", ErrCorruption)
	}
	for _, c := range key[w+2 : w+2+b] {
		k.Hash = k.Hash<<8 | uint64(c)
	}
	k.TS = binary.BigEndian.Uint64(key[w+2+b:])
	return k, nil
}

// KeyTS returns the timestamp of a data or index key: its last 8 bytes.
func KeyTS(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-8:])
}
