package lts

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkLearnKey measures the write path of one message: learn its topic
// and build its key.
func BenchmarkLearnKey(b *testing.B) {
	layout, err := NewLayout(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("topic=known/levels=4/varying=0", func(b *testing.B) {
		trie, _ := NewTrie(DefaultConfig())
		levels := SplitTopic("building/7/floor/temp")
		if _, err := trie.Learn(levels); err != nil {
			b.Fatal(err)
		}
		var key []byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l, _ := trie.Learn(levels)
			key = layout.AppendKey(key[:0], l.Static, l.Varying, uint64(i))
		}
	})
	b.Run("topic=known/levels=4/varying=1", func(b *testing.B) {
		trie, _ := NewTrie(DefaultConfig())
		for i := 0; i < 30; i++ {
			if _, err := trie.Learn(SplitTopic("building/7/dev" + strconv.Itoa(i) + "/temp")); err != nil {
				b.Fatal(err)
			}
		}
		levels := SplitTopic("building/7/dev29/temp")
		var key []byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l, _ := trie.Learn(levels)
			key = layout.AppendKey(key[:0], l.Static, l.Varying, uint64(i))
		}
	})
	b.Run("topic=new/levels=4/varying=1", func(b *testing.B) {
		// New topic names that follow an existing '+': no new edges.
		trie, _ := NewTrie(DefaultConfig())
		topics := make([][]string, b.N+30)
		for i := range topics {
			topics[i] = SplitTopic("building/7/dev" + strconv.Itoa(i) + "/temp")
		}
		for _, tp := range topics[:30] {
			if _, err := trie.Learn(tp); err != nil {
				b.Fatal(err)
			}
		}
		var key []byte
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			l, _ := trie.Learn(topics[30+i])
			key = layout.AppendKey(key[:0], l.Static, l.Varying, uint64(i))
		}
	})
	b.Run("topic=new/levels=4/edges=3", func(b *testing.B) {
		// New topic names that add concrete edges (high thresholds).
		cfg := DefaultConfig()
		cfg.WildcardThresholds = []int{1 << 30}
		cfg.MaxTrieStates = 1 << 24
		const perTrie = 100000
		topics := make([][]string, min(b.N, perTrie))
		for i := range topics {
			topics[i] = SplitTopic("site" + strconv.Itoa(i%100) + "/dev" + strconv.Itoa(i) + "/x/temp")
		}
		var trie *Trie
		var key []byte
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%perTrie == 0 {
				b.StopTimer()
				trie, _ = NewTrie(cfg)
				b.StartTimer()
			}
			l, err := trie.Learn(topics[i%perTrie])
			if err != nil {
				b.Fatal(err)
			}
			key = layout.AppendKey(key[:0], l.Static, l.Varying, uint64(i))
		}
	})
}

// matchTrie learns n random topics region<r>/site<s>/dev<d>/metric<m> with
// the default thresholds.
func matchTrie(b *testing.B, n int) *Trie {
	trie, err := NewTrie(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < n; i++ {
		topic := fmt.Sprintf("region%d/site%d/dev%d/metric%d", rng.IntN(10), rng.IntN(50), rng.IntN(200), rng.IntN(10))
		if _, err := trie.Learn(SplitTopic(topic)); err != nil {
			b.Fatal(err)
		}
	}
	return trie
}

func BenchmarkMatch(b *testing.B) {
	trie := matchTrie(b, 100000)
	for _, bc := range []struct {
		name, filter string
	}{
		{"topics=100000/wildcards=0", "region3/site7/dev12/metric2"},
		{"topics=100000/wildcards=1", "region3/+/dev12/metric2"},
		{"topics=100000/wildcards=3", "+/+/+/metric2"},
		{"topics=100000/wildcards=hash", "region3/#"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			filter := SplitTopic(bc.filter)
			streams := len(trie.Match(filter))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				trie.Match(filter)
			}
			b.ReportMetric(float64(streams), "streams/op")
		})
	}
}

func BenchmarkRatchet(b *testing.B) {
	layout, err := NewLayout(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{0, 2} {
		cs := make([]Constraint, n)
		for i := range cs {
			cs[i] = Any()
		}
		if n > 0 {
			cs[0] = Equal("dev7")
		}
		f, err := layout.Filter(42, cs, 1<<30+12345, 1<<32-777)
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(2, 2))
		keys := make([][]byte, 1024)
		for i := range keys {
			var vs []string
			for j := 0; j < n; j++ {
				vs = append(vs, "dev"+strconv.Itoa(rng.IntN(20)))
			}
			keys[i] = layout.AppendKey(nil, 42, vs, rng.Uint64N(1<<33))
		}
		for _, op := range []string{"ratchet", "increment", "matches"} {
			b.Run(fmt.Sprintf("op=%s/varying=%d/boxes=%d", op, n, len(f.boxes)), func(b *testing.B) {
				var out []byte
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					k := keys[i%len(keys)]
					switch op {
					case "ratchet":
						out, _ = f.Ratchet(out[:0], k)
					case "increment":
						out, _ = f.Increment(out[:0], k)
					default:
						f.Matches(k)
					}
				}
			})
		}
	}
}

func BenchmarkHashLevel(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		HashLevel("device-123456")
	}
}

func BenchmarkValidateTopicName(b *testing.B) {
	topic := "building/7/floor/3/room/12/sensor/temperature"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := ValidateTopicName(topic, DefaultMaxTopicLevels); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHashLevelLong(b *testing.B) {
	level := "a-rather-long-topic-level-of-sixty-four-bytes-0123456789abcdefgh"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		HashLevel(level)
	}
}
