package main

import (
	"encoding/binary"
	"errors"
	"time"
)

// A payload starts with a header that identifies the message without
// trusting the broker, then padding up to --payload bytes:
//
//	magic "mqld" | version 1 | publisher index u32 | sequence u64 |
//	send time (Unix ns) i64 | publisher id length u8 | publisher id
//
// all big-endian. The publisher id is its client id, which carries the run's
// client prefix, so messages of other runs (retained ones, or an old
// durable session's queue) are told apart.
const (
	payloadMagic   = "mqld"
	payloadVersion = 1
	headerFixed    = 4 + 1 + 4 + 8 + 8 + 1
)

var errPayload = errors.New("mqttload: not an mqttload payload")

// header is what a payload says about its message.
type header struct {
	PubIndex  uint32
	Publisher string
	Seq       uint64
	Sent      time.Time
}

// encodePayload appends a payload of at least size bytes to dst.
func encodePayload(dst []byte, h header, size int) []byte {
	start := len(dst)
	dst = append(dst, payloadMagic...)
	dst = append(dst, payloadVersion)
	dst = binary.BigEndian.AppendUint32(dst, h.PubIndex)
	dst = binary.BigEndian.AppendUint64(dst, h.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.Sent.UnixNano()))
	id := h.Publisher
	if len(id) > 255 {
		id = id[:255]
	}
	dst = append(dst, byte(len(id)))
	dst = append(dst, id...)
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// decodePayload reads the header of a payload.
func decodePayload(b []byte) (header, error) {
	if len(b) < headerFixed || string(b[:4]) != payloadMagic || b[4] != payloadVersion {
		return header{}, errPayload
	}
	h := header{
		PubIndex: binary.BigEndian.Uint32(b[5:]),
		Seq:      binary.BigEndian.Uint64(b[9:]),
		Sent:     time.Unix(0, int64(binary.BigEndian.Uint64(b[17:]))),
	}
	n := int(b[25])
	if len(b) < headerFixed+n {
		return header{}, errPayload
	}
	h.Publisher = string(b[headerFixed : headerFixed+n])
	return h, nil
}
