package lts

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

var propLevels = []string{"a", "b", "c", "", "d", "e", "f", "g"}

func randomTopic(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = propLevels[rng.IntN(len(propLevels))]
	}
	if rng.IntN(6) == 0 {
		levels[0] = "$" + levels[0]
	}
	t := strings.Join(levels, "/")
	if t == "" {
		t = "/"
	}
	return t
}

func randomFilter(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		switch rng.IntN(4) {
		case 0:
			levels[i] = "+"
		default:
			levels[i] = propLevels[rng.IntN(len(propLevels))]
		}
	}
	if rng.IntN(3) == 0 {
		levels[n-1] = "#"
	}
	if rng.IntN(6) == 0 && levels[0] != "+" && levels[0] != "#" {
		levels[0] = "$" + levels[0]
	}
	f := strings.Join(levels, "/")
	if f == "" {
		f = "/"
	}
	return f
}

func randomConfig(rng *rand.Rand) Config {
	cfg := DefaultConfig()
	cfg.WildcardThresholds = []int{rng.IntN(6), rng.IntN(4), rng.IntN(4)}
	cfg.BitsPerTopicLevel = []int{8, 16, 64}[rng.IntN(3)]
	cfg.EpochBits = []int{0, 4, 20, 64}[rng.IntN(4)]
	cfg.TopicIndexBytes = []int{2, 3, 4, 8}[rng.IntN(4)]
	cfg.MaxTrieStates = []int{10, 40, 1000}[rng.IntN(3)]
	return cfg
}

type propTopic struct {
	name    string
	learned Learned
	ts      uint64
	key     []byte
}

// TestPropertyMatch learns random topics under random configurations and
// checks, for random filters and time ranges, that the topics selected by
// Match + the layout's key filter + the literal re-check are exactly those
// the naive matcher accepts; that with 64-bit hashes the re-check removes
// nothing; that learned answers and keys never change while learning goes
// on; and that restore and CopyWildcards keep them.
func TestPropertyMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	runs := 150
	if testing.Short() {
		runs = 30
	}
	for run := 0; run < runs; run++ {
		cfg := randomConfig(rng)
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			propertyRun(t, rng, cfg)
		})
	}
}

func propertyRun(t *testing.T, rng *rand.Rand, cfg Config) {
	trie, err := NewTrie(cfg)
	if err != nil {
		t.Fatal(err)
	}
	layout, err := NewLayout(cfg)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*propTopic{}
	var topics []*propTopic
	checkStable := func(tr *Trie, what string) {
		t.Helper()
		for _, p := range topics {
			l, ok := tr.Lookup(SplitTopic(p.name))
			if !ok || l.Static != p.learned.Static || !slices.Equal(l.Varying, p.learned.Varying) {
				t.Fatalf("%s: %q now %v %v, was %v", what, p.name, l, ok, p.learned)
			}
			if key := layout.AppendKey(nil, l.Static, l.Varying, p.ts); string(key) != string(p.key) {
				t.Fatalf("%s: key of %q changed", what, p.name)
			}
		}
	}
	n := 20 + rng.IntN(80)
	for i := 0; i < n; i++ {
		name := randomTopic(rng)
		l, err := trie.Learn(SplitTopic(name))
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := byName[name]; ok {
			if l.Static != p.learned.Static || !slices.Equal(l.Varying, p.learned.Varying) || len(l.NewEdges) != 0 {
				t.Fatalf("relearning %q gave %v, was %v", name, l, p.learned)
			}
			continue
		}
		st, err := trie.Structure(l.Static)
		if err != nil || len(st) != len(SplitTopic(name)) || strings.Count(strings.Join(st, "/"), "+") < len(l.Varying) {
			t.Fatalf("structure of %q: %v %v", name, st, err)
		}
		p := &propTopic{name: name, learned: Learned{Static: l.Static, Varying: l.Varying}, ts: rng.Uint64N(1 << 30)}
		p.key = layout.AppendKey(nil, l.Static, l.Varying, p.ts)
		byName[name] = p
		topics = append(topics, p)
		if i%10 == 0 {
			checkStable(trie, "after learning")
		}
	}
	checkStable(trie, "after learning")

	for i := 0; i < 40; i++ {
		filter := randomFilter(rng)
		if err := ValidateTopicFilter(filter, 0); err != nil {
			t.Fatalf("generated bad filter %q: %v", filter, err)
		}
		from := rng.Uint64N(1 << 30)
		to := from + rng.Uint64N(1<<30)
		if rng.IntN(3) == 0 {
			from, to = 0, ^uint64(0)
		}
		matches := trie.Match(SplitTopic(filter))
		filters := make(map[StateID][]*KeyFilter)
		for _, m := range matches {
			f, err := layout.Filter(m.Static, m.Varying, from, to)
			if err != nil {
				t.Fatal(err)
			}
			filters[m.Static] = append(filters[m.Static], f)
		}
		for _, p := range topics {
			want := naiveMatch(SplitTopic(filter), SplitTopic(p.name)) && p.ts >= from && p.ts < to
			byKey := false
			for _, f := range filters[p.learned.Static] {
				if f.Matches(p.key) {
					byKey = true
				}
			}
			if want && !byKey {
				t.Fatalf("filter %q [%d, %d): topic %q (static %x, varying %q) missed; matches %v", filter, from, to, p.name, p.learned.Static, p.learned.Varying, matches)
			}
			if got := byKey && MatchTopic(filter, p.name); got != want {
				t.Fatalf("filter %q: topic %q selected=%v, naive %v", filter, p.name, got, want)
			}
			if byKey && !want && cfg.BitsPerTopicLevel == 64 && p.ts >= from && p.ts < to {
				t.Fatalf("filter %q: topic %q passes the key filter without a hash collision", filter, p.name)
			}
		}
	}

	// Dump through records, restore in a shuffled order.
	var edges []Edge
	for _, e := range trie.Edges() {
		de, err := DecodeEdgeRecord(AppendEdgeRecord(nil, e, cfg.TopicIndexBytes), cfg.TopicIndexBytes)
		if err != nil {
			t.Fatal(err)
		}
		edges = append(edges, de)
	}
	rng.Shuffle(len(edges), func(i, j int) { edges[i], edges[j] = edges[j], edges[i] })
	restored, err := Restore(cfg, edges)
	if err != nil {
		t.Fatal(err)
	}
	checkStable(restored, "after restore")
	if got, want := restored.Stats(), trie.Stats(); got.States != want.States || got.Streams != want.Streams {
		t.Fatalf("restored stats %+v, want %+v", got, want)
	}

	// The wildcard paths survive into a new generation.
	next, _, err := trie.CopyWildcards(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range topics {
		st, _ := trie.Structure(p.learned.Static)
		if !slices.Contains(st, "+") {
			continue
		}
		l, ok := next.Lookup(SplitTopic(p.name))
		if !ok {
			t.Fatalf("%q (%v) lost by CopyWildcards", p.name, st)
		}
		nst, _ := next.Structure(l.Static)
		if !slices.Equal(st, nst) {
			t.Fatalf("%q: structure %v became %v", p.name, st, nst)
		}
	}
}

// TestConcurrentReaders runs the read-only methods from several goroutines
// at once, so that -race checks the claim that they only read.
func TestConcurrentReaders(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WildcardThresholds = []int{3}
	trie, err := NewTrie(cfg)
	if err != nil {
		t.Fatal(err)
	}
	layout, err := NewLayout(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	var names []string
	for i := 0; i < 200; i++ {
		names = append(names, randomTopic(rng))
		if _, err := trie.Learn(SplitTopic(names[i])); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				name := names[(i*7+g)%len(names)]
				l, ok := trie.Lookup(SplitTopic(name))
				if !ok {
					t.Errorf("%q not found", name)
					return
				}
				key := layout.AppendKey(nil, l.Static, l.Varying, uint64(i))
				for _, m := range trie.Match(SplitTopic("#")) {
					if m.Static != l.Static {
						continue
					}
					f, err := layout.Filter(m.Static, m.Varying, 0, 1000)
					if err != nil || !f.Matches(key) {
						t.Errorf("%q: key not matched (%v)", name, err)
					}
				}
				trie.Structure(l.Static)
				trie.Stats()
			}
		}(g)
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
