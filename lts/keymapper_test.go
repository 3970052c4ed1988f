package lts

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// randomKeymapper builds a keymapper of totalBits bits with 1..3
// dimensions, each split over one or more sources interleaved at random,
// some covering only the middle bits of their coordinate.
func randomKeymapper(t testing.TB, rng *rand.Rand, totalBits int) *Keymapper {
	dims := 1 + rng.IntN(3)
	var sizes []int
	for left := totalBits; left > 0; {
		s := min(left, 1+rng.IntN(4))
		sizes = append(sizes, s)
		left -= s
	}
	for len(sizes) < dims {
		dims--
	}
	owner := make([]int, len(sizes))
	for i := range owner {
		if i < dims {
			owner[i] = i
		} else {
			owner[i] = rng.IntN(dims)
		}
	}
	rng.Shuffle(len(owner), func(i, j int) { owner[i], owner[j] = owner[j], owner[i] })
	// Offsets: each dimension's chunks go from high to low bits, above a
	// random low offset.
	high := make([]int, dims)
	for i, d := range owner {
		high[d] += sizes[i]
	}
	for d := range high {
		high[d] += rng.IntN(3)
	}
	srcs := make([]BitSource, len(sizes))
	for i, d := range owner {
		high[d] -= sizes[i]
		srcs[i] = BitSource{Dim: d, Offset: high[d], Size: sizes[i]}
	}
	m, err := NewKeymapper(srcs)
	if err != nil {
		t.Fatalf("%v: %v", srcs, err)
	}
	return m
}

func randomDimConstraint(rng *rand.Rand) DimConstraint {
	v := func() uint64 { return uint64(rng.IntN(1 << 8)) }
	switch rng.IntN(4) {
	case 0:
		return DimAny()
	case 1:
		return DimEqual(v())
	default:
		return DimRange(v(), v())
	}
}

// accepts is the filter's definition, written against decoded vectors: each
// coordinate, reduced to the bits the key holds, must satisfy its
// constraint reduced the same way.
func accepts(m *Keymapper, cs []DimConstraint, vec []uint64) bool {
	for d, c := range cs {
		lo, hi := m.dimLow[d], m.dimHigh[d]
		v := vec[d] >> uint(lo)
		switch c.Op {
		case OpEqual:
			if v != (c.Min>>uint(lo))&lowMask(hi-lo) {
				return false
			}
		case OpRange:
			a, b := c.Min, c.Max
			if b > lowMask(hi) {
				b = lowMask(hi)
			}
			if a > b || v < a>>uint(lo) || v > b>>uint(lo) {
				return false
			}
		}
	}
	return true
}

func keyOf(n int, width int) []byte {
	k := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		k[i] = byte(n)
		n >>= 8
	}
	return k
}

// TestRatchetExhaustive checks Ratchet, Increment, Matches and Bounds
// against brute force over every key of small key spaces: no matching key
// is ever skipped and no other key is ever returned.
func TestRatchetExhaustive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	runs := 400
	if testing.Short() {
		runs = 50
	}
	for run := 0; run < runs; run++ {
		bits := 8
		if run%50 == 0 {
			bits = 16
		}
		m := randomKeymapper(t, rng, bits)
		cs := make([]DimConstraint, m.Dims())
		for d := range cs {
			cs[d] = randomDimConstraint(rng)
		}
		f, err := m.Filter(cs)
		if err != nil {
			t.Fatal(err)
		}
		n, w := 1<<bits, bits/8
		// next[k] = smallest matching key >= k, or n.
		next := make([]int, n+1)
		next[n] = n
		var vec []uint64
		for k := n - 1; k >= 0; k-- {
			key := keyOf(k, w)
			vec, err = m.Vector(key, vec)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.AppendKey(nil, vec); !bytes.Equal(got, key) {
				t.Fatalf("round trip of %x gave %x", key, got)
			}
			ok := accepts(m, cs, vec)
			if f.Matches(key) != ok {
				t.Fatalf("%v %v: Matches(%x) = %v, want %v", m.sources, cs, key, !ok, ok)
			}
			next[k] = next[k+1]
			if ok {
				next[k] = k
			}
		}
		desc := fmt.Sprintf("sources %v constraints %v", m.sources, cs)
		check := func(op string, in []byte, got []byte, ok bool, want int) {
			t.Helper()
			if want == n {
				if ok {
					t.Fatalf("%s: %s(%x) = %x, want overflow", desc, op, in, got)
				}
				return
			}
			if !ok || !bytes.Equal(got, keyOf(want, w)) {
				t.Fatalf("%s: %s(%x) = %x %v, want %x", desc, op, in, got, ok, keyOf(want, w))
			}
		}
		for k := 0; k < n; k++ {
			key := keyOf(k, w)
			got, ok := f.Ratchet(nil, key)
			check("Ratchet", key, got, ok, next[k])
			got, ok = f.Increment(nil, key)
			check("Increment", key, got, ok, next[k+1])
			// Longer keys sort after their prefix: the answer is > key.
			long := append(bytes.Clone(key), 0)
			got, ok = f.Ratchet(nil, long)
			check("Ratchet", long, got, ok, next[k+1])
			// A shorter key sorts before every key it prefixes.
			if w > 1 && k%256 == 0 {
				got, ok = f.Ratchet(nil, key[:w-1])
				check("Ratchet", key[:w-1], got, ok, next[k])
			}
		}
		lo, hi, ok := f.Bounds()
		if ok != (next[0] < n) {
			t.Fatalf("%s: Bounds ok=%v", desc, ok)
		}
		if ok {
			last := n - 1
			for last >= 0 && next[last] != last {
				last--
			}
			if !bytes.Equal(lo, keyOf(next[0], w)) || !bytes.Equal(hi, keyOf(last, w)) {
				t.Fatalf("%s: Bounds = %x, %x, want %x, %x", desc, lo, hi, keyOf(next[0], w), keyOf(last, w))
			}
		}
	}
}

func TestNewKeymapperErrors(t *testing.T) {
	for _, srcs := range [][]BitSource{
		nil,
		{{Dim: 0, Offset: 0, Size: 7}}, // not whole bytes
		{{Dim: 0, Offset: 0, Size: 0}, {Dim: 0, Offset: 0, Size: 8}},   // empty source
		{{Dim: 0, Offset: 60, Size: 8}},                                // past bit 64
		{{Dim: 1, Offset: 0, Size: 8}},                                 // dimension 0 missing
		{{Dim: 0, Offset: 0, Size: 4}, {Dim: 0, Offset: 4, Size: 4}},   // low bits first
		{{Dim: 0, Offset: 5, Size: 4}, {Dim: 0, Offset: 0, Size: 4}},   // gap
		{{Dim: -1, Offset: 0, Size: 8}},                                // negative dimension
		{{Dim: 0, Offset: -1, Size: 8}},                                // negative offset
		{{Dim: 0, Offset: 0, Size: 64}, {Dim: 0, Offset: 0, Size: 64}}, // overlap
	} {
		if _, err := NewKeymapper(srcs); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewKeymapper(%v) = %v, want ErrInvalidConfig", srcs, err)
		}
	}
}

// FuzzKeymapper: arbitrary sources, constraints and keys never panic, and
// whatever Ratchet returns matches and is >= the input.
func FuzzKeymapper(f *testing.F) {
	f.Add([]byte{0, 0, 8, 1, 4, 4, 1, 0, 4}, []byte{1, 5, 0, 2, 3, 9}, []byte{0x12, 0x34})
	f.Add([]byte{0, 0, 16}, []byte{2, 3, 200}, []byte{0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, srcBytes, csBytes, key []byte) {
		var srcs []BitSource
		for i := 0; i+2 < len(srcBytes) && len(srcs) < 16; i += 3 {
			srcs = append(srcs, BitSource{Dim: int(srcBytes[i] % 4), Offset: int(srcBytes[i+1] % 70), Size: int(srcBytes[i+2] % 70)})
		}
		m, err := NewKeymapper(srcs)
		if err != nil {
			return
		}
		var cs []DimConstraint
		for i := 0; i+2 < len(csBytes) && len(cs) < m.Dims(); i += 3 {
			cs = append(cs, DimConstraint{Op: DimOp(csBytes[i] % 4), Min: uint64(csBytes[i+1]) << (csBytes[i] % 64), Max: uint64(csBytes[i+2]) << (csBytes[i] % 64)})
		}
		flt, err := m.Filter(cs)
		if err != nil {
			return
		}
		vec, verr := m.Vector(key, nil)
		if verr == nil && !bytes.Equal(m.AppendKey(nil, vec), key) {
			t.Fatalf("round trip of %x", key)
		}
		for _, op := range []func([]byte, []byte) ([]byte, bool){flt.Ratchet, flt.Increment} {
			got, ok := op(nil, key)
			if !ok {
				continue
			}
			if len(got) != m.KeyLen() || !flt.Matches(got) || bytes.Compare(got, key) < 0 {
				t.Fatalf("got %x for %x", got, key)
			}
		}
		flt.Bounds()
	})
}
