package lts

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the scripts under testdata/. Commands:
//
//	new [thresholds=(T0,T1,...)] [max-states=N] [index-bytes=W]
//	learn            input: one topic per line; prints static, varying, new edges
//	lookup           input: one topic per line
//	trie             prints the trie, canonical order
//	keys ts=T        prints the layout key of every learned topic
//	match            input: one filter per line
//	streams          prints every static index with its structure
//	stats
//	restore          round-trips every edge through its record and Restore,
//	                 then checks that every learned topic keeps its answer
//	copy-wildcards   replaces the trie with CopyWildcards' result
//	layout [bits=B] [epoch=E] [index-bytes=W]
//	key static=S ts=T [varying=(a,b)]
//	decode           input: key in hex
//	filter static=S from=F to=T [varying=(+,x)]   then:
//	ratchet / increment   input: keys in hex, one per line
//	time-layout [bits=B] [index-bytes=W]     (wildcard_optimized_v2)
//	time-keys static=S ts=T [varying=(a,b)]  data key, then one index key per level
//	time-decode      input: "data <hex>" or "index <hex>", one per line
func TestDataDriven(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "fuzz" {
			continue // the Fuzz targets' seed corpora (TestFuzzSeedCorpora)
		}
		datadriven.Walk(t, filepath.Join("testdata", e.Name()), runScript)
	}
}

// runScript runs one datadriven script.
func runScript(t *testing.T, path string) {
	var (
		cfg     = DefaultConfig()
		trie    *Trie
		learned = map[string]Learned{}
		order   []string
		layout  *Layout
		filter  *KeyFilter
		tlayout *TimeLayout
	)
	datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "new":
			cfg = DefaultConfig()
			scanConfig(t, d, &cfg)
			var err error
			if trie, err = NewTrie(cfg); err != nil {
				return err.Error()
			}
			learned, order = map[string]Learned{}, nil
			return ""
		case "learn":
			var b strings.Builder
			for _, topic := range inputLines(d) {
				l, err := trie.Learn(SplitTopic(topic))
				if err != nil {
					fmt.Fprintf(&b, "%s: %v\n", topic, err)
					continue
				}
				if _, ok := learned[topic]; !ok {
					order = append(order, topic)
				}
				learned[topic] = Learned{Static: l.Static, Varying: l.Varying}
				fmt.Fprintf(&b, "%s -> %s varying=%s", topic, fmtID(l.Static, cfg), fmtStrings(l.Varying))
				if len(l.NewEdges) > 0 {
					fmt.Fprintf(&b, " new=%d", len(l.NewEdges))
				}
				b.WriteString("\n")
			}
			return b.String()
		case "lookup":
			var b strings.Builder
			for _, topic := range inputLines(d) {
				l, ok := trie.Lookup(SplitTopic(topic))
				if !ok {
					fmt.Fprintf(&b, "%s: not found\n", topic)
					continue
				}
				fmt.Fprintf(&b, "%s -> %s varying=%s\n", topic, fmtID(l.Static, cfg), fmtStrings(l.Varying))
			}
			return b.String()
		case "trie":
			return dumpTrie(trie)
		case "keys":
			// The key of every learned topic, in learning order.
			l, err := NewLayout(cfg)
			if err != nil {
				return err.Error()
			}
			ts := scanU64(t, d, "ts")
			var b strings.Builder
			for _, topic := range order {
				lt := learned[topic]
				fmt.Fprintf(&b, "%s: %s\n", topic, fmtHex(l.AppendKey(nil, lt.Static, lt.Varying, ts)))
			}
			return b.String()
		case "match":
			var b strings.Builder
			for _, f := range inputLines(d) {
				ms := trie.Match(SplitTopic(f))
				fmt.Fprintf(&b, "%s:\n", f)
				if len(ms) == 0 {
					b.WriteString("  (none)\n")
				}
				for _, m := range ms {
					st, _ := trie.Structure(m.Static)
					fmt.Fprintf(&b, "  %s %s %s\n", fmtID(m.Static, cfg), strings.Join(st, "/"), fmtConstraints(m.Varying))
				}
			}
			return b.String()
		case "streams":
			var b strings.Builder
			for _, s := range trie.Statics() {
				st, err := trie.Structure(s)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%s %s\n", fmtID(s, cfg), strings.Join(st, "/"))
			}
			return b.String()
		case "stats":
			s := trie.Stats()
			return fmt.Sprintf("states=%d streams=%d at-capacity=%t capped-edges=%d\n", s.States, s.Streams, s.AtCapacity, s.CappedEdges)
		case "restore":
			var edges []Edge
			for _, e := range trie.Edges() {
				rec := AppendEdgeRecord(nil, e, cfg.TopicIndexBytes)
				de, err := DecodeEdgeRecord(rec, cfg.TopicIndexBytes)
				if err != nil {
					t.Fatal(err)
				}
				edges = append(edges, de)
			}
			// Reverse, so Restore sees children before parents.
			for i, j := 0, len(edges)-1; i < j; i, j = i+1, j-1 {
				edges[i], edges[j] = edges[j], edges[i]
			}
			nt, err := Restore(cfg, edges)
			if err != nil {
				return err.Error()
			}
			for _, topic := range order {
				l, ok := nt.Lookup(SplitTopic(topic))
				want := learned[topic]
				if !ok || l.Static != want.Static || fmtStrings(l.Varying) != fmtStrings(want.Varying) {
					t.Fatalf("%s: restored %v %v, want %v", topic, l, ok, want)
				}
			}
			if got, want := dumpTrie(nt), dumpTrie(trie); got != want {
				t.Fatalf("restored trie differs:\n%s\nwant:\n%s", got, want)
			}
			trie = nt
			return fmt.Sprintf("restored %d edges, %d topics unchanged\n", len(edges), len(order))
		case "copy-wildcards":
			nt, edges, err := trie.CopyWildcards(cfg)
			if err != nil {
				return err.Error()
			}
			trie = nt
			learned, order = map[string]Learned{}, nil
			return fmt.Sprintf("copied %d edges\n", len(edges))
		case "layout":
			cfg = DefaultConfig()
			scanConfig(t, d, &cfg)
			var err error
			if layout, err = NewLayout(cfg); err != nil {
				return err.Error()
			}
			return ""
		case "time-layout":
			cfg = DefaultConfig()
			scanConfig(t, d, &cfg)
			var err error
			if tlayout, err = NewTimeLayout(cfg); err != nil {
				return err.Error()
			}
			return ""
		case "time-keys":
			static, ts := StateID(scanU64(t, d, "static")), scanU64(t, d, "ts")
			var b strings.Builder
			fmt.Fprintf(&b, "data  %s\n", fmtTimeKey(t, tlayout, false, tlayout.AppendDataKey(nil, static, ts)))
			for i, v := range scanList(d, "varying") {
				key := tlayout.AppendIndexKey(nil, static, i+1, tlayout.LevelHash(v), ts)
				fmt.Fprintf(&b, "index %s\n", fmtTimeKey(t, tlayout, true, key))
			}
			return b.String()
		case "time-decode":
			var b strings.Builder
			for _, line := range inputLines(d) {
				kind, hexKey, _ := strings.Cut(line, " ")
				key, err := hex.DecodeString(strings.ReplaceAll(hexKey, " ", ""))
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%s %s\n", kind, fmtTimeKey(t, tlayout, kind == "index", key))
			}
			return b.String()
		case "key":
			static, ts := scanU64(t, d, "static"), scanU64(t, d, "ts")
			varying := scanList(d, "varying")
			key := layout.AppendKey(nil, StateID(static), varying, ts)
			return fmtKey(t, layout, key)
		case "decode":
			var b strings.Builder
			for _, line := range inputLines(d) {
				key, err := hex.DecodeString(strings.ReplaceAll(line, " ", ""))
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%s", fmtKey(t, layout, key))
			}
			return b.String()
		case "filter":
			static := scanU64(t, d, "static")
			from, to := scanU64(t, d, "from"), scanU64(t, d, "to")
			var cs []Constraint
			for _, v := range scanList(d, "varying") {
				if v == "+" {
					cs = append(cs, Any())
				} else {
					cs = append(cs, Equal(v))
				}
			}
			var err error
			if filter, err = layout.Filter(StateID(static), cs, from, to); err != nil {
				return err.Error()
			}
			lo, hi, ok := filter.Bounds()
			if !ok {
				return "empty\n"
			}
			return fmt.Sprintf("boxes=%d\nlower=%s\nupper=%s\n", len(filter.boxes), fmtHex(lo), fmtHex(hi))
		case "ratchet", "increment", "matches":
			var b strings.Builder
			for _, line := range inputLines(d) {
				key, err := hex.DecodeString(strings.ReplaceAll(line, " ", ""))
				if err != nil {
					t.Fatal(err)
				}
				if d.Cmd == "matches" {
					fmt.Fprintf(&b, "%s: %t\n", fmtHex(key), filter.Matches(key))
					continue
				}
				var out []byte
				var ok bool
				if d.Cmd == "ratchet" {
					out, ok = filter.Ratchet(nil, key)
				} else {
					out, ok = filter.Increment(nil, key)
				}
				if !ok {
					fmt.Fprintf(&b, "%s -> overflow\n", fmtHex(key))
					continue
				}
				fmt.Fprintf(&b, "%s -> %s\n", fmtHex(key), fmtHex(out))
			}
			return b.String()
		default:
			t.Fatalf("unknown command %q", d.Cmd)
		}
		return ""
	})
}

// TestFuzzSeedCorpora: every Fuzz target of the package has its committed
// seed corpus under testdata/fuzz/<target>, so plain `go test` replays it;
// a missing or empty folder fails, naming the target.
func TestFuzzSeedCorpora(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fuzz := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	n := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fuzz.FindAllSubmatch(src, -1) {
			n++
			dir := filepath.Join("testdata", "fuzz", string(m[1]))
			seeds, err := os.ReadDir(dir)
			if err != nil || len(seeds) == 0 {
				t.Errorf("%s (%s) has no seed corpus in %s: %v", m[1], f, dir, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no Fuzz target found: the pattern is stale")
	}
}

func scanConfig(t *testing.T, d *datadriven.TestData, cfg *Config) {
	if d.HasArg("thresholds") {
		arg, _ := d.Arg("thresholds")
		cfg.WildcardThresholds = nil
		for i := range arg.Vals {
			var v int
			arg.Scan(t, i, &v)
			cfg.WildcardThresholds = append(cfg.WildcardThresholds, v)
		}
	}
	d.MaybeScanArgs(t, "index-bytes", &cfg.TopicIndexBytes)
	if limit := maxStatesFor(cfg.TopicIndexBytes); uint64(cfg.MaxTrieStates) > limit {
		cfg.MaxTrieStates = int(limit)
	}
	d.MaybeScanArgs(t, "max-states", &cfg.MaxTrieStates)
	d.MaybeScanArgs(t, "bits", &cfg.BitsPerTopicLevel)
	d.MaybeScanArgs(t, "epoch", &cfg.EpochBits)
}

func scanU64(t *testing.T, d *datadriven.TestData, key string) uint64 {
	var s string
	d.ScanArgs(t, key, &s)
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("%s=%s: %v", key, s, err)
	}
	return v
}

func scanList(d *datadriven.TestData, key string) []string {
	arg, ok := d.Arg(key)
	if !ok {
		return nil
	}
	out := make([]string, len(arg.Vals))
	for i, v := range arg.Vals {
		out[i] = strings.Trim(v, `"`)
	}
	return out
}

func inputLines(d *datadriven.TestData) []string {
	var out []string
	for _, l := range strings.Split(d.Input, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func fmtID(id StateID, cfg Config) string {
	return fmt.Sprintf("%0*x", 2*cfg.TopicIndexBytes, uint64(id))
}

func fmtStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, " ") + "]"
}

func fmtConstraints(cs []Constraint) string {
	q := make([]string, len(cs))
	for i, c := range cs {
		q[i] = c.String()
	}
	return "[" + strings.Join(q, " ") + "]"
}

func fmtHex(b []byte) string {
	if b == nil {
		return "nil"
	}
	return hex.EncodeToString(b)
}

// fmtKey prints a layout key as hex and as its decoded fields.
func fmtKey(t *testing.T, l *Layout, key []byte) string {
	d, err := l.DecodeKey(key)
	if err != nil {
		return fmt.Sprintf("%s: %v\n", fmtHex(key), err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d bytes)\n", fmtHex(key), len(key))
	cfg := l.Config()
	var epoch uint64
	if cfg.EpochBits < 64 {
		epoch = d.TS >> uint(cfg.EpochBits)
	}
	fmt.Fprintf(&b, "  static=%s ts=%#x epoch=%#x offset=%#x\n", fmtID(d.Static, cfg), d.TS, epoch, d.TS&lowMask(cfg.EpochBits))
	for i, h := range d.Hashes {
		fmt.Fprintf(&b, "  hash%d=%016x\n", i+1, h)
	}
	// The fast encoder and the generic keymapper must agree.
	m, err := l.Keymapper(len(d.Hashes))
	if err != nil {
		t.Fatal(err)
	}
	vec := append([]uint64{uint64(d.Static), d.TS}, d.Hashes...)
	if got := m.AppendKey(nil, vec); string(got) != string(key) {
		t.Fatalf("keymapper key %x, layout key %x", got, key)
	}
	return b.String()
}

// dumpTrie prints the trie as an indented tree, canonical order.
func dumpTrie(t *Trie) string {
	var b strings.Builder
	cfg := t.Config()
	depth := map[StateID]int{t.roots[0].id: 0, t.roots[1].id: 0}
	fmt.Fprintf(&b, "root %s\n", fmtID(t.roots[0].id, cfg))
	dollarPrinted := false
	t.walkCanonical(func(c *state) bool {
		if !dollarPrinted && c.parent == t.roots[1] {
			fmt.Fprintf(&b, "root$ %s\n", fmtID(t.roots[1].id, cfg))
			dollarPrinted = true
		}
		d := depth[c.parent.id] + 1
		depth[c.id] = d
		label := c.kind.String()
		if c.kind == KindLevel {
			label = strconv.Quote(c.label)
		}
		fmt.Fprintf(&b, "%s%s %s", strings.Repeat("  ", d), label, fmtID(c.id, cfg))
		if c.rehash != 0 {
			fmt.Fprintf(&b, " rehash=%d", c.rehash)
		}
		b.WriteString("\n")
		return true
	}, nil)
	return b.String()
}

// fmtTimeKey prints a TimeLayout key in hex with its decoded fields, or the
// decoding error.
func fmtTimeKey(t *testing.T, l *TimeLayout, index bool, key []byte) string {
	t.Helper()
	if !index {
		static, ts, err := l.DecodeDataKey(key)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%x static=%x ts=%#x", key, uint64(static), ts)
	}
	k, err := l.DecodeIndexKey(key)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%x static=%x level=%d hash=%x ts=%#x", key, uint64(k.Static), k.Level, k.Hash, k.TS)
}
