package packet

import (
	"bytes"
	"unicode/utf8"
)

// maxRemainingLength is the largest value a four-byte Variable Byte Integer
// can carry (section 1.5.5).
const maxRemainingLength = 268_435_455

// maxStringLength bounds UTF-8 strings and binary data, whose length is a
// two-byte integer (sections 1.5.4 and 1.5.6).
const maxStringLength = 65_535

// varint results other than success.
const (
	varintOK = iota
	varintShort
	varintTooLong
	varintNonMinimal
)

// parseVarint parses a Variable Byte Integer at the start of b
// (section 1.5.5). It never reads more than four bytes.
func parseVarint(b []byte) (v uint32, n int, status int) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, varintShort
		}
		c := b[i]
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			// A final byte of zero after a continuation byte is a value
			// that fits in fewer bytes [MQTT-1.5.5-1].
			if i > 0 && c == 0 {
				return v, i + 1, varintNonMinimal
			}
			return v, i + 1, varintOK
		}
	}
	return 0, 0, varintTooLong
}

// varintLen is the number of bytes appendVarint writes for v.
func varintLen(v uint32) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, v uint32) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

func appendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(dst []byte, s string) []byte {
	dst = appendU16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = appendU16(dst, uint16(len(b)))
	return append(dst, b...)
}

// validUTF8 reports whether b is a well-formed UTF-8 string as MQTT defines
// it: valid UTF-8 with no surrogate code points [MQTT-1.5.4-1] and no U+0000
// [MQTT-1.5.4-2].
func validUTF8(b []byte) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == 0 {
			return false
		}
		if c >= utf8.RuneSelf {
			// Rare path: leave the rest to the standard library, which
			// also refuses encoded surrogates.
			return utf8.Valid(b[i:]) && bytes.IndexByte(b[i:], 0) < 0
		}
	}
	return true
}

// decoder reads the variable header and payload of one packet (the bytes the
// remaining length covers). The first fault is kept in err; after it every
// read returns a zero value and consumes nothing, so callers check err once
// at the end and before any loop that depends on a value read.
type decoder struct {
	b   []byte
	off int
	t   Type
	v   Version
	err *MalformedError
}

func (d *decoder) fail(e *MalformedError) {
	if d.err == nil {
		d.err = e
	}
}

func (d *decoder) short(what string) {
	d.fail(malformed(d.t, "", what+" runs past the end of the packet"))
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) u8(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.short(what)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) u16(what string) uint16 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 2 {
		d.short(what)
		return 0
	}
	v := uint16(d.b[d.off])<<8 | uint16(d.b[d.off+1])
	d.off += 2
	return v
}

func (d *decoder) u32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 4 {
		d.short(what)
		return 0
	}
	b := d.b[d.off : d.off+4]
	d.off += 4
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// varint reads a Variable Byte Integer inside the packet (MQTT 5.0 only).
func (d *decoder) varint(what string) uint32 {
	if d.err != nil {
		return 0
	}
	v, n, st := parseVarint(d.b[d.off:])
	switch st {
	case varintShort:
		d.short(what)
		return 0
	case varintTooLong:
		d.fail(malformed(d.t, "MQTT-1.5.5-1", what+" is longer than four bytes"))
		return 0
	case varintNonMinimal:
		d.fail(malformed(d.t, "MQTT-1.5.5-1", what+" does not use the fewest bytes"))
		return 0
	}
	d.off += n
	return v
}

// binary reads Binary Data (section 1.5.6). The result aliases the packet
// bytes; its capacity is clipped so appending to it cannot overwrite them.
func (d *decoder) binary(what string) []byte {
	n := int(d.u16(what + " length"))
	if d.err != nil {
		return nil
	}
	if d.remaining() < n {
		d.short(what)
		return nil
	}
	b := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

// str reads a UTF-8 Encoded String (section 1.5.4) and copies it out of the
// packet bytes.
func (d *decoder) str(what string) string {
	b := d.binary(what)
	if d.err != nil {
		return ""
	}
	if !validUTF8(b) {
		d.fail(malformed(d.t, "MQTT-1.5.4-1", what+" is not well-formed UTF-8 or contains U+0000"))
		return ""
	}
	return string(b)
}

// rest returns the bytes not read yet and consumes them.
func (d *decoder) rest() []byte {
	if d.err != nil {
		return nil
	}
	b := d.b[d.off:len(d.b):len(d.b)]
	d.off = len(d.b)
	return b
}

// end records a fault if bytes are left over that the packet type has no
// room for.
func (d *decoder) end() {
	if d.err == nil && d.off != len(d.b) {
		d.fail(malformed(d.t, "", "remaining length has bytes the packet does not use"))
	}
}

// sizer adds up the encoded size of a packet body and records the first field
// that cannot be encoded.
type sizer struct {
	n   int
	err error
}

func (s *sizer) fail(t Type, msg string) {
	if s.err == nil {
		s.err = &encodeError{t: t, msg: msg}
	}
}

func (s *sizer) str(t Type, what string, n int) {
	if n > maxStringLength {
		s.fail(t, what+" is longer than 65535 bytes")
	}
	s.n += 2 + n
}

// encodeError says why a packet cannot be encoded; it matches ErrEncode.
type encodeError struct {
	t   Type
	msg string
}

func (e *encodeError) Error() string { return "packet: cannot encode " + e.t.String() + ": " + e.msg }

func (e *encodeError) Is(target error) bool { return target == ErrEncode }
