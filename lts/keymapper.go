package lts

import "fmt"

// BitSource places part of one vector coordinate in a key: Size bits of
// coordinate Dim, starting at bit Offset of the coordinate (0 = its least
// significant bit).
type BitSource struct {
	Dim    int
	Offset int
	Size   int
}

// MaxKeyBits bounds the width of a keymapper's keys. It admits the longest
// layout key: 8-byte ids, the timestamp and 64-bit hashes for every level
// of the longest topic (at most MaxTopicLength/2+1 levels).
const MaxKeyBits = 8 * (MaxTopicIndexBytes + 8 + 8*(MaxTopicLength/2+1))

// MaxDims bounds the number of vector coordinates: the static index, the
// timestamp and one hash per level of the longest topic.
const MaxDims = 2 + MaxTopicLength/2 + 1

// maxBoxes bounds how many boxes (see KeyFilter) a filter may need.
const maxBoxes = 256

// Keymapper maps vectors of uint64 coordinates to fixed-length byte keys by
// concatenating bit fields, and back (the bitmask keymapper of EMQX, with
// keys as big-endian byte strings so that byte order is numeric order). A
// Keymapper is immutable and safe for concurrent use.
type Keymapper struct {
	sources []BitSource
	pos     []int // bit position of each source in the key, 0 = MSB
	dims    int
	keyLen  int // bytes
	// per dimension: its sources in key order, and the covered range of
	// the coordinate's bits [low, high).
	dimSources [][]int
	dimLow     []int
	dimHigh    []int
}

// NewKeymapper returns a keymapper whose key is the concatenation of the
// sources, listed from the most significant part of the key to the least
// significant. Rules: 1 <= Size, Offset+Size <= 64; dimensions are numbered
// 0..n-1 and each has at least one source; the sources of one dimension
// appear from its high bits to its low bits and are contiguous in the
// coordinate (no bit reordering, no gaps), so comparing keys compares each
// coordinate's covered bits in order; the key is a whole number of bytes,
// at most MaxKeyBits bits.
func NewKeymapper(sources []BitSource) (*Keymapper, error) {
	bad := func(format string, args ...any) (*Keymapper, error) {
		return nil, fmt.Errorf("%w: keymapper: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	m := &Keymapper{sources: append([]BitSource(nil), sources...)}
	bits := 0
	for i, s := range sources {
		if s.Dim < 0 || s.Dim >= MaxDims || s.Size < 1 || s.Offset < 0 || s.Offset+s.Size > 64 {
			return bad("source %d %+v out of range", i, s)
		}
		if s.Dim >= m.dims {
			m.dims = s.Dim + 1
		}
		m.pos = append(m.pos, bits)
		bits += s.Size
		if bits > MaxKeyBits {
			return bad("key longer than %d bits", MaxKeyBits)
		}
	}
	if bits == 0 || bits%8 != 0 {
		return bad("key of %d bits is not a whole number of bytes", bits)
	}
	m.keyLen = bits / 8
	m.dimSources = make([][]int, m.dims)
	m.dimLow = make([]int, m.dims)
	m.dimHigh = make([]int, m.dims)
	for i, s := range sources {
		ds := m.dimSources[s.Dim]
		if len(ds) == 0 {
			m.dimHigh[s.Dim] = s.Offset + s.Size
		} else if prev := sources[ds[len(ds)-1]]; prev.Offset != s.Offset+s.Size {
			return bad("source %d %+v: dimension %d's sources must go from high bits to low bits without gaps", i, s, s.Dim)
		}
		m.dimSources[s.Dim] = append(ds, i)
		m.dimLow[s.Dim] = s.Offset
	}
	for d, ds := range m.dimSources {
		if len(ds) == 0 {
			return bad("dimension %d has no source", d)
		}
	}
	return m, nil
}

// KeyLen returns the length of the keys in bytes.
func (m *Keymapper) KeyLen() int { return m.keyLen }

// Dims returns the number of vector coordinates.
func (m *Keymapper) Dims() int { return m.dims }

// AppendKey appends the key of vec to dst. Bits of a coordinate that no
// source covers are dropped; missing coordinates count as 0 and extra ones
// are ignored.
func (m *Keymapper) AppendKey(dst []byte, vec []uint64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, m.keyLen)...)
	key := dst[start:]
	for i, s := range m.sources {
		var v uint64
		if s.Dim < len(vec) {
			v = vec[s.Dim]
		}
		setBits(key, m.pos[i], s.Size, (v>>uint(s.Offset))&lowMask(s.Size))
	}
	return dst
}

// Vector decodes key into vec (resized to Dims()) and returns it. Bits of a
// coordinate that no source covers are 0. A key of the wrong length is an
// error wrapping ErrCorruption.
func (m *Keymapper) Vector(key []byte, vec []uint64) ([]uint64, error) {
	if len(key) != m.keyLen {
		return vec, fmt.Errorf("%w: key of %d bytes, want %d", ErrCorruption, len(key), m.keyLen)
	}
	vec = append(vec[:0], make([]uint64, m.dims)...)
	for i, s := range m.sources {
		vec[s.Dim] |= getBits(key, m.pos[i], s.Size) << uint(s.Offset)
	}
	return vec, nil
}
