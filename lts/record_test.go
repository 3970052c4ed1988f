package lts

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := DefaultConfig().String(), "bits_per_topic_level=64 epoch_bits=20 topic_index_bytes=4 wildcard_thresholds=[100, 20] max_trie_states=100000"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { *c = Config{} }, "bits_per_topic_level = 0"},
		{func(c *Config) { c.BitsPerTopicLevel = 12 }, "multiple of 8"},
		{func(c *Config) { c.BitsPerTopicLevel = 72 }, "multiple of 8"},
		{func(c *Config) { c.EpochBits = 65 }, "epoch_bits = 65"},
		{func(c *Config) { c.EpochBits = -1 }, "epoch_bits = -1"},
		{func(c *Config) { c.TopicIndexBytes = 0 }, "topic_index_bytes = 0"},
		{func(c *Config) { c.TopicIndexBytes = 9 }, "topic_index_bytes = 9"},
		{func(c *Config) { c.WildcardThresholds = nil }, "wildcard_thresholds is empty"},
		{func(c *Config) { c.WildcardThresholds = []int{10, -1} }, "wildcard_thresholds[1] = -1"},
		{func(c *Config) { c.MaxTrieStates = 0 }, "max_trie_states = 0"},
		{func(c *Config) { c.TopicIndexBytes = 2 }, "at most 16384 with topic_index_bytes = 2"},
	} {
		cfg := DefaultConfig()
		tc.mut(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", cfg, err, tc.want)
		}
		if _, err := NewTrie(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewTrie accepted %+v", cfg)
		}
		if _, err := NewLayout(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewLayout accepted %+v", cfg)
		}
	}
}

func TestLearnErrors(t *testing.T) {
	trie, err := NewTrie(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trie.Learn(nil); !errors.Is(err, ErrEmptyTopic) {
		t.Errorf("Learn(nil) = %v", err)
	}
	if _, ok := trie.Lookup(nil); ok {
		t.Error("Lookup(nil) found something")
	}
	if _, err := trie.Structure(12345); !errors.Is(err, ErrUnknownStatic) {
		t.Errorf("Structure = %v", err)
	}
	if _, err := trie.NumVarying(12345); !errors.Is(err, ErrUnknownStatic) {
		t.Errorf("NumVarying = %v", err)
	}
}

// TestIDSpaceExhausted fills a one-byte id space and checks that the failing
// Learn leaves the trie exactly as it was, and that learning known topics
// keeps working.
func TestIDSpaceExhausted(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TopicIndexBytes = 1
	cfg.MaxTrieStates = 64
	cfg.WildcardThresholds = []int{0}
	trie, err := NewTrie(cfg)
	if err != nil {
		t.Fatal(err)
	}
	topic := "x"
	for i := 0; ; i++ {
		before := trie.Edges()
		stats := trie.Stats()
		_, err := trie.Learn(SplitTopic(topic))
		if err != nil {
			if !errors.Is(err, ErrIDSpaceExhausted) {
				t.Fatal(err)
			}
			if after := trie.Edges(); len(after) != len(before) || trie.Stats() != stats {
				t.Fatalf("failed Learn changed the trie: %d -> %d edges", len(before), len(after))
			}
			break
		}
		if i > 200 {
			t.Fatal("no exhaustion")
		}
		topic += "/x"
	}
	if _, err := trie.Learn(SplitTopic("x/x")); err != nil {
		t.Fatalf("known topic: %v", err)
	}
}

func sampleEdges(t *testing.T) (Config, []Edge) {
	cfg := DefaultConfig()
	cfg.WildcardThresholds = []int{2}
	trie, err := NewTrie(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"a/b", "a/c", "a/d", "$x/y", "e"} {
		if _, err := trie.Learn(SplitTopic(topic)); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, trie.Edges()
}

func TestRestoreCorruption(t *testing.T) {
	cfg, edges := sampleEdges(t)
	if _, err := Restore(cfg, edges); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func([]Edge) []Edge{
		"bad child id":    func(es []Edge) []Edge { es[1].Child ^= 1; return es },
		"bad rehash":      func(es []Edge) []Edge { es[1].Rehash = 1; return es },
		"bad label":       func(es []Edge) []Edge { es[0].Label += "z"; return es },
		"duplicate":       func(es []Edge) []Edge { return append(es, es[2]) },
		"missing parent":  func(es []Edge) []Edge { return es[1:] },
		"unknown kind":    func(es []Edge) []Edge { es[0].Kind = 7; return es },
		"label on end":    func(es []Edge) []Edge { es[len(es)-1].Label = "x"; return es },
		"wide id":         func(es []Edge) []Edge { es[0].Parent |= 1 << 40; return es },
		"child of an end": func(es []Edge) []Edge { return append(es, childOf(cfg, endOf(es), KindLevel, "q")) },
		"second end": func(es []Edge) []Edge {
			e := endOf(es)
			return append(es, childOf(cfg, e.Parent, KindEnd, "", 1))
		},
	} {
		es := mut(append([]Edge(nil), edges...))
		if _, err := Restore(cfg, es); !errors.Is(err, ErrCorruption) {
			t.Errorf("%s: Restore = %v, want ErrCorruption", name, err)
		}
	}
}

func endOf(es []Edge) Edge {
	for _, e := range es {
		if e.Kind == KindEnd {
			return e
		}
	}
	panic("no end edge")
}

func childOf(cfg Config, parent any, kind LabelKind, label string, rehash ...uint32) Edge {
	var p StateID
	switch v := parent.(type) {
	case Edge:
		p = v.Child
	case StateID:
		p = v
	}
	var r uint32
	if len(rehash) > 0 {
		r = rehash[0]
	}
	return Edge{Parent: p, Kind: kind, Label: label, Rehash: r, Child: stateIDHash(p, kind, r, label, cfg.TopicIndexBytes)}
}

func TestEdgeRecordGolden(t *testing.T) {
	e := Edge{Parent: 0x01020304, Kind: KindLevel, Label: "temp", Child: 0x0a0b0c0d, Rehash: 300}
	got := AppendEdgeRecord(nil, e, 4)
	want := []byte{1, 4, 1, 2, 3, 4, 0, 0x0a, 0x0b, 0x0c, 0x0d, 0xac, 0x02, 't', 'e', 'm', 'p'}
	if !bytes.Equal(got, want) {
		t.Fatalf("record %x, want %x", got, want)
	}
	if k := EdgeRecordKey(nil, e, 4); !bytes.Equal(k, []byte{0x0a, 0x0b, 0x0c, 0x0d}) {
		t.Fatalf("key %x", k)
	}
	de, err := DecodeEdgeRecord(got, 4)
	if err != nil || de != e {
		t.Fatalf("decoded %v %v", de, err)
	}
	for name, rec := range map[string][]byte{
		"empty":          nil,
		"short":          {1, 4, 1, 2},
		"width mismatch": {1, 2, 1, 2, 0, 3, 4, 0},
		"bad kind":       {1, 1, 1, 9, 2, 0},
		"label on plus":  {1, 1, 1, 1, 2, 0, 'x'},
		"long varint":    {1, 1, 1, 0, 2, 0x80, 0x00},
		"no varint":      {1, 1, 1, 0, 2},
	} {
		w := 4
		if len(rec) > 1 {
			w = int(rec[1])
		}
		if name == "width mismatch" {
			w = 4
		}
		if _, err := DecodeEdgeRecord(rec, w); !errors.Is(err, ErrCorruption) {
			t.Errorf("%s: %v, want ErrCorruption", name, err)
		}
	}
	if _, err := DecodeEdgeRecord([]byte{2, 4}, 4); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v", err)
	}
}

// FuzzDecodeEdgeRecord: decoding never panics, and whatever decodes
// re-encodes to the same bytes.
func FuzzDecodeEdgeRecord(f *testing.F) {
	f.Add(AppendEdgeRecord(nil, Edge{Parent: 1, Kind: KindLevel, Label: "a", Child: 2}, 4), 4)
	f.Add(AppendEdgeRecord(nil, Edge{Parent: 1, Kind: KindPlus, Child: 2, Rehash: 5}, 1), 1)
	f.Add(AppendEdgeRecord(nil, Edge{Parent: 1 << 60, Kind: KindEnd, Child: 3}, 8), 8)
	f.Add([]byte{1, 4}, 4)
	f.Fuzz(func(t *testing.T, rec []byte, width int) {
		e, err := DecodeEdgeRecord(rec, width)
		if err != nil {
			if !errors.Is(err, ErrCorruption) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error of the wrong class: %v", err)
			}
			return
		}
		if again := AppendEdgeRecord(nil, e, width); !bytes.Equal(again, rec) {
			t.Fatalf("re-encoded %x, was %x", again, rec)
		}
		// A single decoded edge never restores into a trie unless its
		// parent is a root; either way, no panic.
		cfg := DefaultConfig()
		cfg.TopicIndexBytes = width
		if cfg.Validate() == nil {
			_, _ = Restore(cfg, []Edge{e})
		}
	})
}
