package lts

import (
	"bytes"
	"fmt"
)

// DimOp is the kind of a DimConstraint.
type DimOp uint8

const (
	// OpAny accepts every value of the coordinate.
	OpAny DimOp = iota
	// OpEqual accepts only Min.
	OpEqual
	// OpRange accepts [Min, Max], both inclusive.
	OpRange
)

// DimConstraint restricts one vector coordinate of a keymapper filter.
type DimConstraint struct {
	Op       DimOp
	Min, Max uint64
}

// DimAny returns a constraint accepting every value.
func DimAny() DimConstraint { return DimConstraint{Op: OpAny} }

// DimEqual returns a constraint accepting only v.
func DimEqual(v uint64) DimConstraint { return DimConstraint{Op: OpEqual, Min: v, Max: v} }

// DimRange returns a constraint accepting [lo, hi]; it accepts nothing if
// lo > hi.
func DimRange(lo, hi uint64) DimConstraint { return DimConstraint{Op: OpRange, Min: lo, Max: hi} }

type interval struct{ lo, hi uint64 }

// KeyFilter is the set of keys whose coordinates satisfy a list of
// DimConstraints. It is stored as a union of boxes: in a box, each bit
// source of the key must lie in an interval, independently of the others.
// An Equal or Any constraint is one box; a Range over a coordinate split
// across k sources becomes at most 2k-1 boxes (for the layout's timestamp,
// split into epoch and offset, at most 3). So Matches, Ratchet and
// Increment are exact for every coordinate whose bits are all in the key;
// for a coordinate of which the key holds only some bits (a truncated hash),
// Equal compares the bits the key holds, and a Range is widened to whole
// blocks of the low bits that are not stored (and clamped at the largest
// value the high bits can hold). A KeyFilter is immutable and safe for
// concurrent use.
type KeyFilter struct {
	m     *Keymapper
	boxes [][]interval
}

// Filter builds the filter for cs, one constraint per coordinate (missing
// ones are Any). It fails (wrapping ErrInvalidConfig) for more constraints
// than coordinates, an unknown op, or range constraints whose boxes would
// number more than 256.
func (m *Keymapper) Filter(cs []DimConstraint) (*KeyFilter, error) {
	if len(cs) > m.dims {
		return nil, fmt.Errorf("%w: %d constraints for %d dimensions", ErrInvalidConfig, len(cs), m.dims)
	}
	full := make([]interval, len(m.sources))
	for i, s := range m.sources {
		full[i] = interval{0, lowMask(s.Size)}
	}
	f := &KeyFilter{m: m, boxes: [][]interval{full}}
	for d, c := range cs {
		var db [][]interval
		switch c.Op {
		case OpAny:
			continue
		case OpEqual:
			// Compare the bits the key holds: drop the others, as
			// AppendKey does.
			v := c.Min & lowMask(m.dimHigh[d]) &^ lowMask(m.dimLow[d])
			db = m.rangeBoxes(d, v, v)
		case OpRange:
			db = m.rangeBoxes(d, c.Min, c.Max)
		default:
			return nil, fmt.Errorf("%w: unknown constraint op %d", ErrInvalidConfig, c.Op)
		}
		if len(db) == 1 {
			// The common case (Equal): narrow every box in place.
			for _, b := range f.boxes {
				for j, src := range m.dimSources[d] {
					b[src] = db[0][j]
				}
			}
			continue
		}
		if len(f.boxes)*len(db) > maxBoxes {
			return nil, fmt.Errorf("%w: range constraints need more than %d boxes", ErrInvalidConfig, maxBoxes)
		}
		var next [][]interval
		for _, b := range f.boxes {
			for _, x := range db {
				nb := append([]interval(nil), b...)
				for j, src := range m.dimSources[d] {
					nb[src] = x[j]
				}
				next = append(next, nb)
			}
		}
		f.boxes = next
	}
	return f, nil
}

// rangeBoxes decomposes the coordinate range [a, b] of dimension d into
// boxes over its sources (one interval per source of d, in key order). A
// bound above the bits the key holds is clamped to the largest value it
// can hold; bits below are dropped, which widens the range to whole blocks.
func (m *Keymapper) rangeBoxes(d int, a, b uint64) [][]interval {
	if high := m.dimHigh[d]; high < 64 {
		limit := lowMask(high)
		if a > limit {
			return nil
		}
		b = min(b, limit)
	}
	if a > b {
		return nil
	}
	srcs := m.dimSources[d]
	k := len(srcs)
	ad, bd, mx := make([]uint64, k), make([]uint64, k), make([]uint64, k)
	for j, si := range srcs {
		s := m.sources[si]
		mx[j] = lowMask(s.Size)
		ad[j] = (a >> uint(s.Offset)) & mx[j]
		bd[j] = (b >> uint(s.Offset)) & mx[j]
	}
	r := ranger{a: ad, b: bd, max: mx}
	return r.span(0)
}

// ranger decomposes a range of mixed-radix numbers (digits most
// significant first) into boxes.
type ranger struct{ a, b, max []uint64 }

func prefix(iv interval, rest [][]interval) [][]interval {
	out := make([][]interval, len(rest))
	for i, r := range rest {
		out[i] = append([]interval{iv}, r...)
	}
	return out
}

func (r *ranger) full(i int) []interval {
	out := make([]interval, 0, len(r.max)-i)
	for j := i; j < len(r.max); j++ {
		out = append(out, interval{0, r.max[j]})
	}
	return out
}

func (r *ranger) allMin(i int) bool {
	for j := i; j < len(r.a); j++ {
		if r.a[j] != 0 {
			return false
		}
	}
	return true
}

func (r *ranger) allMax(i int) bool {
	for j := i; j < len(r.b); j++ {
		if r.b[j] != r.max[j] {
			return false
		}
	}
	return true
}

// span: numbers whose digits i.. lie between a[i:] and b[i:].
func (r *ranger) span(i int) [][]interval {
	if i == len(r.a) {
		return [][]interval{{}}
	}
	ai, bi := r.a[i], r.b[i]
	if ai == bi {
		return prefix(interval{ai, ai}, r.span(i+1))
	}
	var out [][]interval
	lo, hi := ai, bi
	if !r.allMin(i + 1) {
		out = append(out, prefix(interval{ai, ai}, r.ge(i+1))...)
		lo = ai + 1
	}
	bMax := r.allMax(i + 1)
	if !bMax {
		hi = bi - 1
	}
	if lo <= hi {
		out = append(out, append([]interval{{lo, hi}}, r.full(i+1)...))
	}
	if !bMax {
		out = append(out, prefix(interval{bi, bi}, r.le(i+1))...)
	}
	return out
}

// ge: numbers whose digits i.. are >= a[i:].
func (r *ranger) ge(i int) [][]interval {
	if i == len(r.a) {
		return [][]interval{{}}
	}
	if r.allMin(i + 1) {
		return [][]interval{append([]interval{{r.a[i], r.max[i]}}, r.full(i+1)...)}
	}
	out := prefix(interval{r.a[i], r.a[i]}, r.ge(i+1))
	if r.a[i] < r.max[i] {
		out = append(out, append([]interval{{r.a[i] + 1, r.max[i]}}, r.full(i+1)...))
	}
	return out
}

// le: numbers whose digits i.. are <= b[i:].
func (r *ranger) le(i int) [][]interval {
	if i == len(r.b) {
		return [][]interval{{}}
	}
	if r.allMax(i + 1) {
		return [][]interval{append([]interval{{0, r.b[i]}}, r.full(i+1)...)}
	}
	out := prefix(interval{r.b[i], r.b[i]}, r.le(i+1))
	if r.b[i] > 0 {
		out = append(out, append([]interval{{0, r.b[i] - 1}}, r.full(i+1)...))
	}
	return out
}

// Empty reports whether the filter accepts no key at all.
func (f *KeyFilter) Empty() bool { return len(f.boxes) == 0 }

// Matches reports whether key satisfies the filter. A key of the wrong
// length does not.
func (f *KeyFilter) Matches(key []byte) bool {
	if len(key) != f.m.keyLen {
		return false
	}
	for _, box := range f.boxes {
		if f.inBox(box, key) {
			return true
		}
	}
	return false
}

func (f *KeyFilter) inBox(box []interval, key []byte) bool {
	for i, s := range f.m.sources {
		v := getBits(key, f.m.pos[i], s.Size)
		if v < box[i].lo || v > box[i].hi {
			return false
		}
	}
	return true
}

// Bounds returns the smallest and the largest key the filter accepts, both
// inclusive, and false if it accepts none. Every key of a keymapper has the
// same length, so upper with a 0x00 byte appended is the tightest exclusive
// bound for an iterator.
func (f *KeyFilter) Bounds() (lower, upper []byte, ok bool) {
	if len(f.boxes) == 0 {
		return nil, nil, false
	}
	lower, ok = f.Ratchet(nil, make([]byte, f.m.keyLen))
	if !ok {
		return nil, nil, false
	}
	scratch := make([]byte, f.m.keyLen)
	for _, box := range f.boxes {
		for i, s := range f.m.sources {
			setBits(scratch, f.m.pos[i], s.Size, box[i].hi)
		}
		if upper == nil || bytes.Compare(scratch, upper) > 0 {
			upper = append(upper[:0], scratch...)
		}
	}
	return lower, upper, true
}

// Ratchet appends to dst the smallest key K' >= key (byte-string order)
// that the filter accepts, and reports false (appending nothing) if there
// is none. key may have any length; the answer always has the keymapper's
// length.
func (f *KeyFilter) Ratchet(dst, key []byte) ([]byte, bool) {
	return f.next(dst, key, false)
}

// Increment appends to dst the smallest accepted key strictly greater than
// key: the next key to seek to after key has been read. It reports false
// if there is none.
func (f *KeyFilter) Increment(dst, key []byte) ([]byte, bool) {
	return f.next(dst, key, true)
}

func (f *KeyFilter) next(dst, key []byte, strict bool) ([]byte, bool) {
	if len(f.boxes) == 0 {
		return dst, false
	}
	n := f.m.keyLen
	var stack [3 * 64]byte
	var buf []byte
	if 3*n <= len(stack) {
		buf = stack[:3*n]
	} else {
		buf = make([]byte, 3*n)
	}
	start, cand, best := buf[:n], buf[n:2*n], buf[2*n:]
	// start: the smallest key of length n that is >= key (or > key if
	// strict), by byte-string order.
	switch {
	case len(key) < n:
		copy(start, key)
		clear(start[len(key):])
	case len(key) == n:
		copy(start, key)
		if strict && !incrementBytes(start) {
			return dst, false
		}
	default:
		// Every key of length n that equals key[:n] is smaller than key.
		copy(start, key[:n])
		if !incrementBytes(start) {
			return dst, false
		}
	}
	found := false
	for _, box := range f.boxes {
		copy(cand, start)
		if !f.ratchetBox(box, cand) {
			continue
		}
		if !found || bytes.Compare(cand, best) < 0 {
			copy(best, cand)
			found = true
		}
	}
	if !found {
		return dst, false
	}
	return append(dst, best...), true
}

// ratchetBox turns k into the smallest key >= k inside box, or reports
// false if there is none.
func (f *KeyFilter) ratchetBox(box []interval, k []byte) bool {
	m := f.m
	for i, s := range m.sources {
		v := getBits(k, m.pos[i], s.Size)
		switch {
		case v < box[i].lo:
			// Raise this field; everything below goes to its minimum.
			setBits(k, m.pos[i], s.Size, box[i].lo)
			f.resetBelow(box, k, i+1)
			return true
		case v > box[i].hi:
			// Carry: bump the deepest field above that has room.
			for j := i - 1; j >= 0; j-- {
				vj := getBits(k, m.pos[j], m.sources[j].Size)
				if vj < box[j].hi {
					setBits(k, m.pos[j], m.sources[j].Size, vj+1)
					f.resetBelow(box, k, j+1)
					return true
				}
			}
			return false
		}
	}
	return true
}

func (f *KeyFilter) resetBelow(box []interval, k []byte, from int) {
	for j := from; j < len(f.m.sources); j++ {
		setBits(k, f.m.pos[j], f.m.sources[j].Size, box[j].lo)
	}
}
