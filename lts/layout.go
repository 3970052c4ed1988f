package lts

import (
	"encoding/binary"
	"fmt"
)

// Dimensions of the wildcard_optimized keymapper's vectors.
const (
	// DimStatic is the static index coordinate.
	DimStatic = 0
	// DimTimestamp is the timestamp (µs) coordinate.
	DimTimestamp = 1
	// DimFirstHash is the coordinate of the first varying level's hash;
	// level i uses DimFirstHash+i.
	DimFirstHash = 2
)

// layoutCachedVarying is how many keymappers (for 0..n-1 varying levels) a
// Layout builds up front; streams with more varying levels get theirs on
// demand.
const layoutCachedVarying = 16

// Layout is the wildcard_optimized key layout of one generation. A key is,
// from the most significant bit:
//
//	static index                 8*TopicIndexBytes bits
//	epoch = ts >> EpochBits      64-EpochBits bits
//	hash(v1) … hash(vN)          BitsPerTopicLevel bits each
//	ts & (2^EpochBits - 1)       EpochBits bits
//
// See the package documentation. A Layout is immutable and safe for
// concurrent use.
type Layout struct {
	cfg     Config
	mappers [layoutCachedVarying]*Keymapper
}

// NewLayout returns the layout for cfg (it uses BitsPerTopicLevel,
// EpochBits and TopicIndexBytes, but validates all of cfg).
func NewLayout(cfg Config) (*Layout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Layout{cfg: cfg.Clone()}
	for n := range l.mappers {
		m, err := l.buildKeymapper(n)
		if err != nil {
			return nil, err
		}
		l.mappers[n] = m
	}
	return l, nil
}

// Config returns a copy of the layout's configuration.
func (l *Layout) Config() Config { return l.cfg.Clone() }

func (l *Layout) buildKeymapper(n int) (*Keymapper, error) {
	e, b := l.cfg.EpochBits, l.cfg.BitsPerTopicLevel
	srcs := []BitSource{{Dim: DimStatic, Offset: 0, Size: 8 * l.cfg.TopicIndexBytes}}
	if e < 64 {
		srcs = append(srcs, BitSource{Dim: DimTimestamp, Offset: e, Size: 64 - e})
	}
	for i := 0; i < n; i++ {
		srcs = append(srcs, BitSource{Dim: DimFirstHash + i, Offset: 64 - b, Size: b})
	}
	if e > 0 {
		srcs = append(srcs, BitSource{Dim: DimTimestamp, Offset: 0, Size: e})
	}
	return NewKeymapper(srcs)
}

// Keymapper returns the keymapper for streams with nVarying varying levels:
// vectors are [static, ts, HashLevel(v1), …, HashLevel(vN)].
func (l *Layout) Keymapper(nVarying int) (*Keymapper, error) {
	if nVarying < 0 {
		return nil, fmt.Errorf("%w: %d varying levels", ErrInvalidConfig, nVarying)
	}
	if nVarying < layoutCachedVarying {
		return l.mappers[nVarying], nil
	}
	return l.buildKeymapper(nVarying)
}

// KeyLen returns the length in bytes of the keys of a stream with nVarying
// varying levels: TopicIndexBytes + 8 + nVarying*BitsPerTopicLevel/8.
func (l *Layout) KeyLen(nVarying int) int {
	return l.cfg.TopicIndexBytes + 8 + nVarying*l.cfg.BitsPerTopicLevel/8
}

// EpochStart returns the first timestamp of ts's epoch.
func (l *Layout) EpochStart(ts uint64) uint64 {
	if l.cfg.EpochBits == 64 {
		return 0
	}
	return ts >> uint(l.cfg.EpochBits) << uint(l.cfg.EpochBits)
}

// AppendKey appends to dst the key of a message with timestamp ts (µs) in
// stream static, whose varying levels are varying (Learned.Varying).
func (l *Layout) AppendKey(dst []byte, static StateID, varying []string, ts uint64) []byte {
	start := len(dst)
	dst = l.appendKeyHeader(dst, static, ts, len(varying))
	key := dst[start:]
	pos, b := 8*l.cfg.TopicIndexBytes+64-l.cfg.EpochBits, l.cfg.BitsPerTopicLevel
	for _, v := range varying {
		setBits(key, pos, b, HashLevel(v)>>uint(64-b))
		pos += b
	}
	return dst
}

// AppendKeyHashes is AppendKey with the varying levels' HashLevel values
// already computed.
func (l *Layout) AppendKeyHashes(dst []byte, static StateID, hashes []uint64, ts uint64) []byte {
	start := len(dst)
	dst = l.appendKeyHeader(dst, static, ts, len(hashes))
	key := dst[start:]
	pos, b := 8*l.cfg.TopicIndexBytes+64-l.cfg.EpochBits, l.cfg.BitsPerTopicLevel
	for _, h := range hashes {
		setBits(key, pos, b, h>>uint(64-b))
		pos += b
	}
	return dst
}

// appendKeyHeader appends a zeroed key with the static index, epoch and
// time offset set.
func (l *Layout) appendKeyHeader(dst []byte, static StateID, ts uint64, n int) []byte {
	w, e := l.cfg.TopicIndexBytes, l.cfg.EpochBits
	dst = appendID(dst, static, w)
	if n == 0 {
		// epoch followed by offset is ts itself.
		return binary.BigEndian.AppendUint64(dst, ts)
	}
	start := len(dst) - w
	dst = append(dst, make([]byte, 8+n*l.cfg.BitsPerTopicLevel/8)...)
	key := dst[start:]
	if e < 64 {
		setBits(key, 8*w, 64-e, ts>>uint(e))
	}
	if e > 0 {
		setBits(key, 8*len(key)-e, e, ts&lowMask(e))
	}
	return dst
}

// DecodedKey is a key taken apart.
type DecodedKey struct {
	// Static is the stream's static index.
	Static StateID
	// TS is the message's timestamp (µs).
	TS uint64
	// Hashes holds the stored hash of each varying level, in the high
	// BitsPerTopicLevel bits (the low bits, not stored, are 0), so that it
	// equals HashLevel(v) when BitsPerTopicLevel is 64.
	Hashes []uint64
}

// DecodeKey takes a key apart. The number of varying levels follows from the
// key's length; a length no stream can have is an error wrapping
// ErrCorruption.
func (l *Layout) DecodeKey(key []byte) (DecodedKey, error) {
	w, b := l.cfg.TopicIndexBytes, l.cfg.BitsPerTopicLevel/8
	rest := len(key) - w - 8
	if rest < 0 || rest%b != 0 {
		return DecodedKey{}, fmt.Errorf("%w: key of %d bytes is not %d + 8 + n*%d", ErrCorruption, len(key), w, b)
	}
	n := rest / b
	e := l.cfg.EpochBits
	d := DecodedKey{Static: readID(key[:w])}
	if e < 64 {
		d.TS = getBits(key, 8*w, 64-e) << uint(e)
	}
	if e > 0 {
		d.TS |= getBits(key, 8*len(key)-e, e)
	}
	if n > 0 {
		d.Hashes = make([]uint64, n)
		pos := 8*w + 64 - e
		for i := range d.Hashes {
			d.Hashes[i] = getBits(key, pos, 8*b) << uint(64-8*b)
			pos += 8 * b
		}
	}
	return d, nil
}

// Filter returns the key filter for the messages of stream static whose
// varying levels satisfy varying (one Constraint per varying level, from
// Trie.Match) and whose timestamp is in [from, to). Use its Bounds for the
// iterator's bounds, Ratchet and Increment to seek, and Matches to check
// each key; the real topic must still be checked against the filter
// (MatchTopic), because level hashes can collide. An empty time range gives
// a filter that accepts nothing.
func (l *Layout) Filter(static StateID, varying []Constraint, from, to uint64) (*KeyFilter, error) {
	m, err := l.Keymapper(len(varying))
	if err != nil {
		return nil, err
	}
	cs := make([]DimConstraint, DimFirstHash+len(varying))
	cs[DimStatic] = DimEqual(uint64(static))
	if to == 0 {
		cs[DimTimestamp] = DimRange(1, 0) // empty
	} else {
		cs[DimTimestamp] = DimRange(from, to-1)
	}
	for i, c := range varying {
		if c.Any {
			cs[DimFirstHash+i] = DimAny()
		} else {
			cs[DimFirstHash+i] = DimEqual(HashLevel(c.Value))
		}
	}
	return m.Filter(cs)
}
