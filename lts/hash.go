package lts

import (
	"crypto/sha256"
	"encoding/binary"
)

// HashLevel returns the 64-bit hash of a varying topic level that goes into
// keys: the first 8 bytes of SHA-256(level), read as a big-endian integer.
// A layout with BitsPerTopicLevel = B stores the B most significant bits,
// that is the first B/8 bytes of the digest. The empty level hashes as the
// empty string. This function is part of the on-disk format and must never
// change.
func HashLevel(level string) uint64 {
	var buf [hashStackBytes]byte
	d := sha256.Sum256(bytesOf(buf[:0], level))
	return binary.BigEndian.Uint64(d[:8])
}

// hashStackBytes is the input size up to which hashing copies into a stack
// buffer instead of allocating.
const hashStackBytes = 256

// bytesOf appends s to buf, which callers give a stack array's capacity.
func bytesOf(buf []byte, s string) []byte { return append(buf, s...) }

// stateIDHash derives the id of the state reached from parent by an edge of
// the given kind and label, at the given rehash attempt, truncated to
// indexBytes bytes:
//
//	SHA-256( parent as 8 bytes big-endian | kind (1 byte) |
//	         rehash as 4 bytes big-endian | label bytes )
//
// and the id is the first indexBytes bytes of the digest, big-endian. Roots
// use parent 0 and the kinds kindRootPlain / kindRootDollar. This function
// is part of the on-disk format (Restore checks every stored id against it)
// and must never change.
func stateIDHash(parent StateID, kind LabelKind, rehash uint32, label string, indexBytes int) StateID {
	var stack [hashStackBytes]byte
	in := stack[:13]
	binary.BigEndian.PutUint64(in[0:8], uint64(parent))
	in[8] = byte(kind)
	binary.BigEndian.PutUint32(in[9:13], rehash)
	d := sha256.Sum256(append(in, label...))
	return StateID(binary.BigEndian.Uint64(d[:8]) >> (64 - 8*uint(indexBytes)))
}
