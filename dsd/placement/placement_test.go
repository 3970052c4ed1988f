package placement

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// planner is the test's model of one durable storage's metadata: what the
// metadata group holds per shard (replica set, target set, pending
// transitions) and which sites are lost.
type planner struct {
	nShards, rf int
	replicas    [][]string
	targets     [][]string
	pending     [][]Transition
	lost        map[string]bool
}

// TestPlanner runs testdata/planner: allocate, set-replicas, join, leave,
// lose and run (carry out every pending transition, one per shard per
// round, as the shard allocators would).
func TestPlanner(t *testing.T) {
	datadriven.RunTest(t, "testdata/planner", func(t *testing.T, d *datadriven.TestData) string {
		var p *planner
		if d.Cmd == "allocate" {
			p = &planner{}
		}
		return current.run(t, d, p)
	})
}

var current = &plannerHolder{}

type plannerHolder struct{ p *planner }

func vals(t *testing.T, d *datadriven.TestData, key string) []string {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			return a.Vals
		}
	}
	t.Fatalf("%s: missing %s=", d.Pos, key)
	return nil
}

func (h *plannerHolder) run(t *testing.T, d *datadriven.TestData, fresh *planner) string {
	if fresh != nil {
		h.p = fresh
	}
	p := h.p
	switch d.Cmd {
	case "allocate":
		d.ScanArgs(t, "shards", &p.nShards)
		d.ScanArgs(t, "rf", &p.rf)
		p.replicas = Allocate(p.nShards, vals(t, d, "sites"), p.rf)
		p.targets = slicesClone2(p.replicas)
		p.pending = make([][]Transition, p.nShards)
		p.lost = map[string]bool{}
		return p.render()
	case "set-replicas":
		return p.retarget(vals(t, d, "sites"))
	case "join":
		return p.retarget(Join(Sites(p.replicas, p.targets), vals(t, d, "site")[0]))
	case "leave":
		return p.retarget(Leave(Sites(p.replicas, p.targets), vals(t, d, "site")[0]))
	case "lose":
		for _, s := range vals(t, d, "site") {
			p.lost[s] = true
		}
		// A lost site changes the plan of every shard not yet done.
		for shard := range p.pending {
			p.pending[shard] = Plan(p.replicas[shard], p.targets[shard], func(s string) bool { return p.lost[s] })
		}
		return p.render()
	case "run":
		var b strings.Builder
		for round := 1; ; round++ {
			var steps []string
			for shard := range p.pending {
				if len(p.pending[shard]) == 0 {
					continue
				}
				tr := p.pending[shard][0]
				p.pending[shard] = p.pending[shard][1:]
				p.replicas[shard] = Apply(p.replicas[shard], tr)
				steps = append(steps, fmt.Sprintf("%d%s", shard, tr))
			}
			if len(steps) == 0 {
				break
			}
			fmt.Fprintf(&b, "round %d: %s\n", round, strings.Join(steps, " "))
		}
		b.WriteString(p.render())
		return b.String()
	}
	t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	return ""
}

func (p *planner) retarget(sites []string) string {
	p.targets = Allocate(p.nShards, sites, p.rf)
	for shard := range p.pending {
		p.pending[shard] = Plan(p.replicas[shard], p.targets[shard], func(s string) bool { return p.lost[s] })
	}
	return p.render()
}

// render prints what dstool info prints: SHARDS, then REPLICA TRANSITIONS
// when any are pending.
func (p *planner) render() string {
	var b strings.Builder
	b.WriteString("SHARDS:\n")
	for shard, set := range p.replicas {
		fmt.Fprintf(&b, "messages/%-3s %s\n", strconv.Itoa(shard), strings.Join(set, " "))
	}
	var trs []string
	for shard, pend := range p.pending {
		if len(pend) == 0 {
			continue
		}
		var parts []string
		for _, tr := range pend {
			parts = append(parts, tr.String())
		}
		trs = append(trs, fmt.Sprintf("messages/%-3s %s", strconv.Itoa(shard), strings.Join(parts, " ")))
	}
	if len(trs) > 0 {
		b.WriteString("REPLICA TRANSITIONS:\n")
		b.WriteString(strings.Join(trs, "\n"))
		b.WriteString("\n")
	}
	return b.String()
}

func slicesClone2(in [][]string) [][]string {
	out := make([][]string, len(in))
	for i, s := range in {
		out[i] = slices.Clone(s)
	}
	return out
}

// TestAllocateBalanced: every site holds shards*rf/sites replicas, give or
// take one, for any number of sites and replication factor.
func TestAllocateBalanced(t *testing.T) {
	for sites := 1; sites <= 7; sites++ {
		for rf := 1; rf <= 5; rf++ {
			var names []string
			for i := range sites {
				names = append(names, fmt.Sprintf("s%d", i))
			}
			count := map[string]int{}
			for _, set := range Allocate(16, names, rf) {
				if len(set) != min(sites, rf) {
					t.Fatalf("sites=%d rf=%d: a shard has %d replicas", sites, rf, len(set))
				}
				for _, s := range set {
					count[s]++
				}
			}
			lo, hi := 1<<30, 0
			for _, n := range names {
				lo, hi = min(lo, count[n]), max(hi, count[n])
			}
			if hi-lo > 1 {
				t.Fatalf("sites=%d rf=%d: replicas per site from %d to %d", sites, rf, lo, hi)
			}
		}
	}
}
