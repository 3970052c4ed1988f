package lts

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestLayoutKeyRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		cfg := randomConfig(rng)
		cfg.MaxTrieStates = 10
		l, err := NewLayout(cfg)
		if err != nil {
			t.Fatal(err)
		}
		static := StateID(rng.Uint64() >> (64 - 8*uint(cfg.TopicIndexBytes)))
		ts := rng.Uint64()
		n := rng.IntN(20)
		varying := make([]string, n)
		hashes := make([]uint64, n)
		for j := range varying {
			varying[j] = propLevels[rng.IntN(len(propLevels))]
			hashes[j] = HashLevel(varying[j])
		}
		key := l.AppendKey([]byte("prefix"), static, varying, ts)
		if !bytes.HasPrefix(key, []byte("prefix")) {
			t.Fatal("AppendKey overwrote dst")
		}
		key = key[len("prefix"):]
		if len(key) != l.KeyLen(n) {
			t.Fatalf("key of %d bytes, KeyLen %d", len(key), l.KeyLen(n))
		}
		if k2 := l.AppendKeyHashes(nil, static, hashes, ts); !bytes.Equal(k2, key) {
			t.Fatalf("AppendKeyHashes %x, AppendKey %x", k2, key)
		}
		d, err := l.DecodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		mask := ^lowMask(64 - cfg.BitsPerTopicLevel)
		if d.Static != static || d.TS != ts || len(d.Hashes) != n {
			t.Fatalf("decoded %+v", d)
		}
		for j, h := range d.Hashes {
			if h != hashes[j]&mask {
				t.Fatalf("hash %d: %x, want %x", j, h, hashes[j]&mask)
			}
		}
		m, err := l.Keymapper(n)
		if err != nil {
			t.Fatal(err)
		}
		if k3 := m.AppendKey(nil, append([]uint64{uint64(static), ts}, hashes...)); !bytes.Equal(k3, key) {
			t.Fatalf("keymapper %x, layout %x (cfg %v)", k3, key, cfg)
		}
		cs := make([]Constraint, n)
		for j := range cs {
			if rng.IntN(2) == 0 {
				cs[j] = Any()
			} else {
				cs[j] = Equal(varying[j])
			}
		}
		f, err := l.Filter(static, cs, ts, ts+1)
		if err != nil {
			t.Fatal(err)
		}
		if ts != ^uint64(0) && !f.Matches(key) {
			t.Fatalf("own filter rejects key (cfg %v)", cfg)
		}
		if n == 0 && ts != ^uint64(0) {
			// The filter holds exactly one key.
			if got, ok := f.Ratchet(nil, nil); !ok || !bytes.Equal(got, key) {
				t.Fatalf("Ratchet(nil) = %x, want %x", got, key)
			}
		}
		if l.EpochStart(ts) > ts || (cfg.EpochBits < 64 && ts-l.EpochStart(ts) >= 1<<uint(cfg.EpochBits)) {
			t.Fatalf("EpochStart(%x) = %x", ts, l.EpochStart(ts))
		}
	}
}

func TestLayoutDefaultsKeyLen(t *testing.T) {
	l, err := NewLayout(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range []int{12, 20, 28} {
		if got := l.KeyLen(n); got != want {
			t.Errorf("KeyLen(%d) = %d, want %d", n, got, want)
		}
	}
	if _, err := l.Keymapper(-1); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Keymapper(-1) = %v", err)
	}
	if _, err := l.DecodeKey(make([]byte, 13)); !errors.Is(err, ErrCorruption) {
		t.Errorf("DecodeKey(13 bytes) = %v", err)
	}
	if got, want := HashLevel(""), uint64(0xe3b0c44298fc1c14); got != want {
		t.Errorf("HashLevel(\"\") = %x, want %x (SHA-256 of nothing)", got, want)
	}
}

// FuzzLayoutKey: any key bytes decode without panicking; whatever decodes
// re-encodes to the same key, and any filter's Ratchet from it returns a
// matching key not below it.
func FuzzLayoutKey(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1}, uint8(64), uint8(20), uint8(4), "a")
	f.Add([]byte{7, 0, 0, 0, 0, 0, 0, 0x11, 0xca, 0x10}, uint8(8), uint8(8), uint8(1), "+")
	f.Fuzz(func(t *testing.T, key []byte, bits, epoch, width uint8, level string) {
		cfg := DefaultConfig()
		cfg.BitsPerTopicLevel, cfg.EpochBits, cfg.TopicIndexBytes = int(bits), int(epoch), int(width)
		cfg.MaxTrieStates = 1
		l, err := NewLayout(cfg)
		if err != nil {
			return
		}
		d, err := l.DecodeKey(key)
		if err != nil {
			if !errors.Is(err, ErrCorruption) {
				t.Fatal(err)
			}
			return
		}
		if again := l.AppendKeyHashes(nil, d.Static, d.Hashes, d.TS); !bytes.Equal(again, key) {
			t.Fatalf("re-encoded %x, was %x", again, key)
		}
		cs := make([]Constraint, len(d.Hashes))
		for i := range cs {
			if level == "+" {
				cs[i] = Any()
			} else {
				cs[i] = Equal(level)
			}
		}
		flt, err := l.Filter(d.Static, cs, d.TS/2, d.TS+d.TS/2)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := flt.Ratchet(nil, key); ok && (!flt.Matches(got) || bytes.Compare(got, key) < 0) {
			t.Fatalf("Ratchet(%x) = %x", key, got)
		}
	})
}
