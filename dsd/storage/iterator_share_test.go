package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// iteratorsAtDecoding is IteratorsAt as it was: each iterator decoded,
// moved and encoded again. The test holds the new one to its bytes.
func iteratorsAtDecoding(its [][]byte, atBytes []byte) ([][]byte, error) {
	at, err := decodeIterator(atBytes)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(its))
	for i, b := range its {
		it, err := decodeIterator(b)
		if err != nil {
			return nil, err
		}
		if at.Shard != it.Shard || at.Generation != it.Generation || !bytes.Equal(at.StaticIndex, it.StaticIndex) || at.TopicFilter != it.TopicFilter {
			return nil, fmt.Errorf("%w: iterator of another stream or filter", ErrInvalidIterator)
		}
		it.LastSeenKey = at.LastSeenKey
		out[i] = encodeIterator(it)
	}
	return out, nil
}

func TestIteratorsAt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(vals ...int64) int64 { return vals[rng.IntN(len(vals))] }
	for range 2000 {
		at := &storagev1.Iterator{
			Shard:       uint32(pick(0, 1, 15)),
			Generation:  uint64(pick(0, 1, 1<<40)),
			StaticIndex: [][]byte{nil, []byte("01234567")}[rng.IntN(2)],
			TopicFilter: []string{"", "a/+/c", "#"}[rng.IntN(3)],
			StartTimeUs: pick(0, 5, 1_800_000_000_000_000),
			LastSeenKey: [][]byte{nil, []byte("k1"), bytes.Repeat([]byte("x"), 300)}[rng.IntN(3)],
		}
		var its [][]byte
		for range rng.IntN(4) {
			it := &storagev1.Iterator{Shard: at.Shard, Generation: at.Generation, StaticIndex: at.StaticIndex, TopicFilter: at.TopicFilter,
				StartTimeUs: pick(0, -1, 7, 1_800_000_000_000_001), LastSeenKey: [][]byte{nil, []byte("old")}[rng.IntN(2)]}
			its = append(its, encodeIterator(it))
		}
		got, pos, err := IteratorsAt(its, encodeIterator(at))
		if err != nil {
			t.Fatal(err)
		}
		want := must(iteratorsAtDecoding(its, encodeIterator(at)))
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("at %v: iterator %d is %x, want %x", at, i, got[i], want[i])
			}
			if p, _ := IteratorPosition(got[i]); p != pos {
				t.Fatalf("at %v: position %q, the iterator's is %q", at, pos, p)
			}
		}
	}
	// Of another stream or filter, or not an iterator: refused.
	at := encodeIterator(&storagev1.Iterator{Shard: 1, Generation: 2, StaticIndex: []byte("s"), TopicFilter: "a", LastSeenKey: []byte("k")})
	for _, other := range []*storagev1.Iterator{
		{Shard: 2, Generation: 2, StaticIndex: []byte("s"), TopicFilter: "a"},
		{Shard: 1, Generation: 3, StaticIndex: []byte("s"), TopicFilter: "a"},
		{Shard: 1, Generation: 2, StaticIndex: []byte("t"), TopicFilter: "a"},
		{Shard: 1, Generation: 2, StaticIndex: []byte("s"), TopicFilter: "b"},
		{Shard: 1, Generation: 2, StaticIndex: []byte("s")},
	} {
		if _, _, err := IteratorsAt([][]byte{encodeIterator(other)}, at); !errors.Is(err, ErrInvalidIterator) {
			t.Errorf("%v: %v, want ErrInvalidIterator", other, err)
		}
	}
	for _, bad := range [][]byte{nil, {9}, {valueVersion1, 0xff}} {
		if _, _, err := IteratorsAt([][]byte{bad}, at); !errors.Is(err, ErrInvalidIterator) {
			t.Errorf("%x: %v, want ErrInvalidIterator", bad, err)
		}
	}
}

// BenchmarkIteratorsAt moves the readers of one shared read (fan-out to
// 32 subscribers of one topic on a gateway) to the reader's position.
// decode=true is the former way (each iterator decoded and encoded).
func BenchmarkIteratorsAt(b *testing.B) {
	at := encodeIterator(&storagev1.Iterator{Shard: 3, Generation: 1, StaticIndex: []byte("01234567"), TopicFilter: "bench/fanout/1",
		StartTimeUs: 1_800_000_000_000_000, LastSeenKey: []byte("0123456789abcdef")})
	its := make([][]byte, 32)
	for i := range its {
		its[i] = encodeIterator(&storagev1.Iterator{Shard: 3, Generation: 1, StaticIndex: []byte("01234567"), TopicFilter: "bench/fanout/1",
			StartTimeUs: 1_800_000_000_000_000 + int64(i), LastSeenKey: []byte("0123456789abcdee")})
	}
	for _, decode := range []bool{true, false} {
		b.Run(fmt.Sprintf("readers=32/decode=%t", decode), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				var err error
				if decode {
					_, err = iteratorsAtDecoding(its, at)
					if err == nil {
						for _, it := range its {
							IteratorPosition(it)
						}
					}
				} else {
					_, _, err = IteratorsAt(its, at)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
