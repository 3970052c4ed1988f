package packet

import (
	"io"
	"strconv"
)

// FixedHeader is the fixed header at the start of every packet (section 2.1).
type FixedHeader struct {
	// Type is the control packet type.
	Type Type
	// Flags is the low nibble of the first byte.
	Flags byte
	// RemainingLength is the number of bytes after the fixed header.
	RemainingLength int
}

// VersionUnknown is the version to decode with before CONNECT has been read:
// only CONNECT decodes, since the first packet of a connection must be a
// CONNECT [MQTT-3.1.0-1], and its fixed header is checked leniently because
// the rules that differ between versions are not known yet.
const VersionUnknown Version = 0

// checkFirstByte checks the packet type and flags in the first byte of a
// fixed header, which the decoder does before it reads anything else.
func checkFirstByte(b0 byte, v Version) (Type, byte, error) {
	t, flags := Type(b0>>4), b0&0x0f
	switch {
	case t == 0:
		return 0, 0, malformed(0, "", "packet type 0 is reserved")
	case t != CONNECT && !v.Valid():
		// [MQTT-3.1.0-1]: the first packet must be CONNECT.
		return 0, 0, protocolError(t, "MQTT-3.1.0-1", "packet before CONNECT")
	case t == AUTH && v != V5:
		return 0, 0, malformed(0, "", "packet type 15 is reserved before MQTT 5.0")
	case t == PUBLISH:
		if flags&0x06 == 0x06 {
			return 0, 0, malformed(t, "MQTT-3.3.1-4", "QoS 3")
		}
	case flags != t.fixedFlags():
		return 0, 0, malformed(t, "MQTT-2.1.3-1", "reserved flags 0x"+strconv.FormatUint(uint64(flags), 16))
	}
	return t, flags, nil
}

// remainingLengthStatus turns a parseVarint status into an error.
func remainingLengthError(t Type, status int, v Version) error {
	switch status {
	case varintShort:
		return errTruncated
	case varintTooLong:
		return malformed(t, "MQTT-1.5.5-1", "remaining length is longer than four bytes")
	case varintNonMinimal:
		// MQTT 5.0 requires the shortest encoding [MQTT-1.5.5-1]; 3.1.1
		// (section 2.2.3) does not, and such encodings are accepted there.
		if v == V5 {
			return malformed(t, "MQTT-1.5.5-1", "remaining length does not use the fewest bytes")
		}
	}
	return nil
}

// ParseFixedHeader parses the fixed header at the start of b and returns it
// with its length in bytes. The packet type and flags are checked for
// version v first, so a bad first byte is reported even when b holds
// nothing else. If b ends inside the header the error is
// io.ErrUnexpectedEOF.
func ParseFixedHeader(b []byte, v Version) (FixedHeader, int, error) {
	if len(b) == 0 {
		return FixedHeader{}, 0, errTruncated
	}
	t, flags, err := checkFirstByte(b[0], v)
	if err != nil {
		return FixedHeader{}, 0, err
	}
	rl, n, st := parseVarint(b[1:])
	if err := remainingLengthError(t, st, v); err != nil {
		return FixedHeader{}, 0, err
	}
	return FixedHeader{Type: t, Flags: flags, RemainingLength: int(rl)}, 1 + n, nil
}

// checkSize refuses a packet whose total size is over maxSize (0 means the
// protocol limit) [MQTT-3.1.2-24].
func checkSize(h FixedHeader, headerLen int, maxSize uint32) error {
	if maxSize != 0 && uint64(headerLen)+uint64(h.RemainingLength) > uint64(maxSize) {
		return PacketTooLarge
	}
	return nil
}

// Decode decodes the packet at the start of b, sent with protocol version v
// (VersionUnknown before CONNECT), and returns it with the number of bytes
// it took. A packet larger than maxSize bytes in total (0: no limit below the
// protocol's) is refused with PacketTooLarge as soon as its fixed header has
// been read. If b ends before the packet does, the error is
// io.ErrUnexpectedEOF and the caller should read more.
//
// Byte slices in the result (Payload, Password, Will payload, Correlation
// Data, Authentication Data) alias b; strings are copied.
func Decode(b []byte, v Version, maxSize uint32) (Packet, int, error) {
	h, n, err := ParseFixedHeader(b, v)
	if err != nil {
		return nil, 0, err
	}
	if err := checkSize(h, n, maxSize); err != nil {
		return nil, 0, err
	}
	if len(b)-n < h.RemainingLength {
		return nil, 0, errTruncated
	}
	end := n + h.RemainingLength
	p, err := DecodeBody(h, b[n:end:end], v)
	if err != nil {
		return nil, 0, err
	}
	return p, end, nil
}

// ReadPacket reads one packet from r and decodes it with protocol version v
// (VersionUnknown before CONNECT). It reads the fixed header, refuses the
// packet with PacketTooLarge if its total size is over maxSize (0: no limit
// below the protocol's), and only then allocates a buffer of exactly the
// remaining length, which the packet's byte slices alias. A body over 256 KiB
// is read into a buffer that grows as the bytes arrive, so a declared length
// costs nothing until it is sent. Wrap a network connection in a
// bufio.Reader: the header is read a byte at a time.
//
// It returns io.EOF if r ends before the first byte and io.ErrUnexpectedEOF
// if it ends inside the packet.
func ReadPacket(r io.Reader, v Version, maxSize uint32) (Packet, error) {
	p, _, err := ReadPacketSize(r, v, maxSize)
	return p, err
}

// ReadPacketSize is ReadPacket that also returns the packet's size on the
// wire (fixed header included), so a caller counting bytes need not size
// the packet again.
func ReadPacketSize(r io.Reader, v Version, maxSize uint32) (Packet, int, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &byteReader{r: r}
	}
	b0, err := br.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	t, flags, err := checkFirstByte(b0, v)
	if err != nil {
		return nil, 0, err
	}
	var vb [4]byte
	n := 0
	for n < len(vb) {
		c, err := br.ReadByte()
		if err != nil {
			return nil, 0, unexpected(err)
		}
		vb[n] = c
		n++
		if c&0x80 == 0 {
			break
		}
	}
	rl, _, st := parseVarint(vb[:n])
	if err := remainingLengthError(t, st, v); err != nil {
		return nil, 0, err
	}
	h := FixedHeader{Type: t, Flags: flags, RemainingLength: int(rl)}
	if err := checkSize(h, 1+n, maxSize); err != nil {
		return nil, 0, err
	}
	body, err := readBody(r, h.RemainingLength)
	if err != nil {
		return nil, 0, err
	}
	p, err := DecodeBody(h, body, v)
	return p, 1 + n + h.RemainingLength, err
}

// readChunk is the largest body ReadPacket allocates before it has read any
// of it.
const readChunk = 256 << 10

// readBody reads n bytes. Up to readChunk it allocates exactly n at once;
// beyond that the buffer grows as data arrives, so a peer that declares a
// large remaining length and sends nothing costs readChunk bytes, not the
// declared length.
func readBody(r io.Reader, n int) ([]byte, error) {
	if n <= readChunk {
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, unexpected(err)
		}
		return body, nil
	}
	body := make([]byte, readChunk)
	got := 0
	for {
		m, err := io.ReadFull(r, body[got:])
		got += m
		if err != nil {
			return nil, unexpected(err)
		}
		if got == n {
			return body, nil
		}
		grown := make([]byte, min(2*len(body), n))
		copy(grown, body)
		body = grown
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// byteReader reads single bytes from a reader that has no ReadByte.
type byteReader struct {
	r   io.Reader
	buf [1]byte
}

func (b *byteReader) ReadByte() (byte, error) {
	_, err := io.ReadFull(b.r, b.buf[:])
	return b.buf[0], err
}

// DecodeBody decodes a packet whose fixed header h has been parsed (by
// ParseFixedHeader) and whose remaining length bytes are body, sent with
// protocol version v. CONNECT carries its own version and decodes with any
// v; every other type needs v to be V31, V311 or V5. Byte slices in the
// result alias body.
func DecodeBody(h FixedHeader, body []byte, v Version) (Packet, error) {
	if h.RemainingLength != len(body) {
		return nil, malformed(h.Type, "", "body length does not match the remaining length")
	}
	if h.Type > AUTH || h.Flags > 0x0f {
		return nil, malformed(0, "", "fixed header out of range")
	}
	if _, _, err := checkFirstByte(byte(h.Type)<<4|h.Flags, v); err != nil {
		return nil, err
	}
	d := decoder{b: body, t: h.Type, v: v}
	var p Packet
	var err error
	switch h.Type {
	case CONNECT:
		p, err = decodeConnect(&d)
	case CONNACK:
		p = decodeConnack(&d)
	case PUBLISH:
		p = decodePublish(&d, h.Flags)
	case PUBACK:
		p = (*Puback)(decodeAck(&d))
	case PUBREC:
		p = (*Pubrec)(decodeAck(&d))
	case PUBREL:
		p = (*Pubrel)(decodeAck(&d))
	case PUBCOMP:
		p = (*Pubcomp)(decodeAck(&d))
	case SUBSCRIBE:
		p = decodeSubscribe(&d)
	case SUBACK:
		p = decodeSuback(&d)
	case UNSUBSCRIBE:
		p = decodeUnsubscribe(&d)
	case UNSUBACK:
		p = decodeUnsuback(&d)
	case PINGREQ:
		d.end()
		p = &Pingreq{}
	case PINGRESP:
		d.end()
		p = &Pingresp{}
	case DISCONNECT:
		p = decodeDisconnect(&d)
	case AUTH:
		p = decodeAuth(&d)
	}
	if err != nil {
		return nil, err
	}
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}
