// Package placement decides where the replicas of a durable storage's
// shards live and how to move them, as seed 002 describes: shards are
// allocated round-robin over the sorted site ids with
// min(sites, replication_factor) replicas each, and a shard moves from
// its replica set to its target set by transitions that remove lost sites
// first, then alternate adding and removing, starting with an add. It is
// pure: no I/O, no clocks, deterministic for the same input, so every site
// that applies the same metadata command computes the same plan.
package placement

import (
	"slices"
)

// Allocate returns, per shard 0..nShards-1, the sites that hold it:
// min(len(sites), rf) = R sites dealt round-robin over the sorted site
// ids, shard i taking the R sites that follow shard i-1's (starting at
// i*R mod the number of sites). Dealing replicas like cards keeps every
// site's count within one of the others'; advancing one site per shard
// would not once R > 1 and the sites do not divide the shards. Each
// returned set is sorted. It returns nil when there are no sites.
func Allocate(nShards int, sites []string, rf int) [][]string {
	sorted := sortedSet(sites)
	if len(sorted) == 0 || nShards <= 0 {
		return nil
	}
	n := min(len(sorted), max(rf, 1))
	out := make([][]string, nShards)
	for shard := range out {
		set := make([]string, n)
		for k := range n {
			set[k] = sorted[(shard*n+k)%len(sorted)]
		}
		slices.Sort(set)
		out[shard] = set
	}
	return out
}

// Op is a transition's kind.
type Op int

// The two transitions.
const (
	Add Op = iota
	Del
)

// Transition adds a replica of a shard on a site, or removes it.
type Transition struct {
	Op   Op
	Site string
}

// String is "+site" or "-site", as dstool info prints transitions.
func (t Transition) String() string {
	if t.Op == Add {
		return "+" + t.Site
	}
	return "-" + t.Site
}

// Plan returns the transitions that take a shard from its replica set to
// its target set: first the removal of every lost site (one that is down
// or gone: it cannot vote and may hold up a quorum), then additions and
// removals alternately, starting with an addition, so the replica count
// never drops below the smaller of the two sets and never rises more than
// one above it. Sites are taken in sorted order.
func Plan(replicas, target []string, lost func(site string) bool) []Transition {
	cur, want := sortedSet(replicas), sortedSet(target)
	var adds, dels, out []Transition
	for _, s := range want {
		if !slices.Contains(cur, s) {
			adds = append(adds, Transition{Add, s})
		}
	}
	for _, s := range cur {
		if slices.Contains(want, s) {
			continue
		}
		if lost != nil && lost(s) {
			out = append(out, Transition{Del, s})
		} else {
			dels = append(dels, Transition{Del, s})
		}
	}
	for len(adds) > 0 || len(dels) > 0 {
		if len(adds) > 0 {
			out = append(out, adds[0])
			adds = adds[1:]
		}
		if len(dels) > 0 {
			out = append(out, dels[0])
			dels = dels[1:]
		}
	}
	return out
}

// Apply returns replicas after t: the set with t.Site added or removed,
// sorted.
func Apply(replicas []string, t Transition) []string {
	out := slices.DeleteFunc(slices.Clone(replicas), func(s string) bool { return s == t.Site })
	if t.Op == Add {
		out = append(out, t.Site)
	}
	slices.Sort(out)
	return out
}

// Sites is the set of sites that hold or will hold a replica of any shard:
// the db's site list that join and leave change (EMQX's db_sites).
func Sites(replicas, targets [][]string) []string {
	var all []string
	for _, set := range replicas {
		all = append(all, set...)
	}
	for _, set := range targets {
		all = append(all, set...)
	}
	return sortedSet(all)
}

// Join is the site list after adding site; Leave after removing it.
func Join(sites []string, site string) []string { return sortedSet(append(slices.Clone(sites), site)) }

// Leave is the site list without site.
func Leave(sites []string, site string) []string {
	return slices.DeleteFunc(sortedSet(sites), func(s string) bool { return s == site })
}

func sortedSet(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
