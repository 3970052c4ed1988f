package lts

import (
	"encoding/binary"
	"fmt"
)

// EdgeRecordVersion is the version byte of edge records written by this
// build.
const EdgeRecordVersion = 1

// MaxEdgeRecordLen bounds the length of a valid edge record: the fixed part
// with 8-byte ids and the longest rehash, plus the longest topic level.
const MaxEdgeRecordLen = 2 + 8 + 1 + 8 + binary.MaxVarintLen32 + MaxTopicLength

// AppendEdgeRecord appends the record (value) of edge e to dst. The layout
// (version 1) is:
//
//	version      1 byte   = 1
//	width        1 byte   = indexBytes (TopicIndexBytes), 1..8
//	parent       width bytes, big-endian
//	kind         1 byte   0 = level, 1 = '+', 2 = end
//	child        width bytes, big-endian
//	rehash       unsigned varint (encoding/binary), minimal length
//	label        the remaining bytes (KindLevel only; empty otherwise)
//
// Store it under EdgeRecordKey(e). The format of version 1 never changes; a
// new format gets a new version byte and the old decoder stays.
func AppendEdgeRecord(dst []byte, e Edge, indexBytes int) []byte {
	dst = append(dst, EdgeRecordVersion, byte(indexBytes))
	dst = appendID(dst, e.Parent, indexBytes)
	dst = append(dst, byte(e.Kind))
	dst = appendID(dst, e.Child, indexBytes)
	dst = binary.AppendUvarint(dst, uint64(e.Rehash))
	return append(dst, e.Label...)
}

// EdgeRecordKey appends the suggested storage key of edge e's record to dst:
// the child id, indexBytes bytes big-endian. Child ids are unique in a
// trie, and Restore accepts the records in any order.
func EdgeRecordKey(dst []byte, e Edge, indexBytes int) []byte {
	return appendID(dst, e.Child, indexBytes)
}

// DecodeEdgeRecord decodes a record written by AppendEdgeRecord for a trie
// with the given TopicIndexBytes. It checks the record's shape, not that the
// ids hash right (Restore does). Errors wrap ErrCorruption or
// ErrUnsupportedVersion; it never panics.
func DecodeEdgeRecord(rec []byte, indexBytes int) (Edge, error) {
	corrupt := func(format string, args ...any) (Edge, error) {
		return Edge{}, fmt.Errorf("%w: edge record: "+format, append([]any{ErrCorruption}, args...)...)
	}
	if len(rec) < 2 {
		return corrupt("%d bytes, shorter than its header", len(rec))
	}
	if rec[0] != EdgeRecordVersion {
		return Edge{}, fmt.Errorf("%w: edge record version %d (this build reads %d)", ErrUnsupportedVersion, rec[0], EdgeRecordVersion)
	}
	if len(rec) > MaxEdgeRecordLen {
		return corrupt("%d bytes, longer than %d", len(rec), MaxEdgeRecordLen)
	}
	w := int(rec[1])
	if w != indexBytes {
		return corrupt("id width %d, expected %d", w, indexBytes)
	}
	if w < MinTopicIndexBytes || w > MaxTopicIndexBytes {
		return corrupt("id width %d out of range", w)
	}
	fixed := 2 + w + 1 + w
	if len(rec) < fixed+1 {
		return corrupt("%d bytes, shorter than %d", len(rec), fixed+1)
	}
	var e Edge
	e.Parent = readID(rec[2 : 2+w])
	e.Kind = LabelKind(rec[2+w])
	e.Child = readID(rec[3+w : fixed])
	rehash, n := binary.Uvarint(rec[fixed:])
	if n <= 0 || rehash > maxRehash || n != uvarintLen(rehash) {
		return corrupt("bad rehash varint")
	}
	e.Rehash = uint32(rehash)
	label := rec[fixed+n:]
	switch e.Kind {
	case KindLevel:
		if len(label) > MaxTopicLength {
			return corrupt("label of %d bytes", len(label))
		}
		e.Label = string(label)
	case KindPlus, KindEnd:
		if len(label) != 0 {
			return corrupt("%v edge with a label", e.Kind)
		}
	default:
		return corrupt("unknown kind %d", uint8(e.Kind))
	}
	return e, nil
}

func appendID(dst []byte, id StateID, width int) []byte {
	for i := width - 1; i >= 0; i-- {
		dst = append(dst, byte(uint64(id)>>(8*uint(i))))
	}
	return dst
}

func readID(b []byte) StateID {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return StateID(v)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
