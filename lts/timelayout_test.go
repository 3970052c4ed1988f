package lts

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestTimeLayoutProperties checks, on random keys of random configs, that
// data and index keys decode to what they were built from, and that within
// one list (a stream's data keys, or one level and hash) byte order is
// timestamp order, which the leapfrog read depends on.
func TestTimeLayoutProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := 0; iter < 2000; iter++ {
		cfg := randomConfig(rng)
		l, err := NewTimeLayout(cfg)
		if err != nil {
			t.Fatal(err)
		}
		w := cfg.TopicIndexBytes
		static := StateID(rng.Uint64() >> (64 - 8*uint(w)))
		level := 1 + rng.IntN(MaxIndexLevel)
		h := l.LevelHash(randomTopic(rng))
		ts1, ts2 := rng.Uint64(), rng.Uint64()

		d1, d2 := l.AppendDataKey(nil, static, ts1), l.AppendDataKey(nil, static, ts2)
		if s, ts, err := l.DecodeDataKey(d1); err != nil || s != static || ts != ts1 || KeyTS(d1) != ts1 {
			t.Fatalf("%v: data key %x decodes to %v %v %v", cfg, d1, s, ts, err)
		}
		i1, i2 := l.AppendIndexKey(nil, static, level, h, ts1), l.AppendIndexKey(nil, static, level, h, ts2)
		k, err := l.DecodeIndexKey(i1)
		if err != nil || k != (IndexKey{Static: static, Level: level, Hash: h, TS: ts1}) || KeyTS(i1) != ts1 {
			t.Fatalf("%v: index key %x decodes to %+v %v", cfg, i1, k, err)
		}
		if !bytes.HasPrefix(i1, l.AppendIndexPrefix(nil, static, level, h)) {
			t.Fatalf("index key %x lacks its prefix", i1)
		}
		if bytes.Compare(d1, d2) != cmpU64(ts1, ts2) || bytes.Compare(i1, i2) != cmpU64(ts1, ts2) {
			t.Fatalf("key order differs from ts order: %x %x / %x %x", d1, d2, i1, i2)
		}
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
