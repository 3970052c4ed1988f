package dsdbackend

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// ParseAddrs splits gateway.dsd (and --dsd): one address, or a
// comma-separated list of sites, any one enough to discover the others.
// Spaces around an address are dropped; an empty list, an empty entry or
// an address given twice is an error.
func ParseAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("dsdbackend: dsd addresses %q: an empty address", s)
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("dsdbackend: dsd addresses %q: %s given twice", s, a)
		}
		out = append(out, a)
	}
	return out, nil
}

// ShardOf is the shard of a client id's session and publishes: FNV-1a
// (64-bit) of the client id modulo n_shards, as dsd computes it
// (storage.ShardOf; TestShardOfMatchesDSD pins values of both).
func ShardOf(clientID string, nShards int) int {
	h := fnv.New64a()
	h.Write([]byte(clientID))
	return int(h.Sum64() % uint64(nShards))
}

// Table is where the gateway sends each shard's calls: the address of the
// site leading it. A Table is immutable; the Pool replaces it.
type Table struct {
	// NShards is dsd's n_shards (0 before the first answer).
	NShards int
	// Sites are the addresses of every site, sorted (the seeds until one
	// answered).
	Sites []string
	// Leaders are, per shard, the leader's address; "" while none is
	// known (calls then go to Default, which refuses or names the leader).
	Leaders []string
	// Default is the site of a shard without a known leader: the site
	// that answered the discovery.
	Default string
	// Aliases map a site's advertised address (which refusals name) to the
	// address the gateway reached it at, when they differ (a dsd bound to
	// 0.0.0.0, a name instead of an IP address).
	Aliases map[string]string
}

// Multi reports whether calls may go to more than one site.
func (t *Table) Multi() bool { return len(t.Sites) > 1 }

// ShardOf is the shard of clientID (0 before n_shards is known).
func (t *Table) ShardOf(clientID string) int {
	if t.NShards <= 1 {
		return 0
	}
	return ShardOf(clientID, t.NShards)
}

// Leader is the address to send shard's calls to.
func (t *Table) Leader(shard int) string {
	if shard >= 0 && shard < len(t.Leaders) && t.Leaders[shard] != "" {
		return t.Leaders[shard]
	}
	return t.Default
}

// Complete reports whether every shard has a known leader.
func (t *Table) Complete() bool {
	if t.NShards == 0 {
		return false
	}
	return !slices.Contains(t.Leaders, "")
}

// LeadsAny reports whether addr leads a shard.
func (t *Table) LeadsAny(addr string) bool {
	return slices.Contains(t.Leaders, addr)
}

// withLeader returns a copy of t with shard led by addr.
func (t *Table) withLeader(shard int, addr string) *Table {
	if a, ok := t.Aliases[addr]; ok {
		addr = a
	}
	if shard < 0 || shard >= len(t.Leaders) || t.Leaders[shard] == addr {
		return t
	}
	c := *t
	c.Leaders = slices.Clone(t.Leaders)
	c.Leaders[shard] = addr
	if !slices.Contains(c.Sites, addr) {
		c.Sites = append(slices.Clone(c.Sites), addr)
		slices.Sort(c.Sites)
	}
	return &c
}

// siteView is what one site answered to Info.
type siteView struct {
	addr string
	info *dsdv1.InfoResponse
}

// buildTable merges the sites' answers into a table: the sites and each
// shard's replicas come from the metadata state (any answer); a shard with
// one replica is led by it; a replicated shard by the leader named with
// the highest term. That leader is not trusted when it was asked and did
// not answer (it may be the site that just died): the shard's leader is
// then unknown. A site without cluster
// information (a single dsd, or one from before replication) leads every
// shard.
func buildTable(views []siteView, asked map[string]bool) *Table {
	if len(views) == 0 {
		return nil
	}
	t := &Table{Default: views[0].addr}
	// byID is the address to dial per site id: the one the gateway reached
	// it at, else the address the site advertises (dsd.advertise_address).
	byID := map[string]string{}
	answered := map[string]bool{}
	for _, v := range views {
		answered[v.addr] = true
		for _, s := range v.info.GetCluster().GetState().GetSites() {
			if s.GetAddress() != "" {
				byID[s.GetId()] = s.GetAddress()
			}
		}
	}
	for _, v := range views {
		id := v.info.GetSite()
		if _, member := byID[id]; !member || id == "" {
			continue
		}
		if adv := byID[id]; adv != v.addr {
			if t.Aliases == nil {
				t.Aliases = map[string]string{}
			}
			t.Aliases[adv] = v.addr
		}
		byID[id] = v.addr
	}
	for _, a := range byID {
		if !slices.Contains(t.Sites, a) {
			t.Sites = append(t.Sites, a)
		}
	}
	for _, v := range views {
		if !slices.Contains(t.Sites, v.addr) && len(byID) == 0 {
			t.Sites = append(t.Sites, v.addr)
		}
	}
	slices.Sort(t.Sites)
	first := views[0].info
	t.NShards = int(first.GetNShards())
	t.Leaders = make([]string, t.NShards)
	placements := first.GetCluster().GetState().GetMessages().GetShards()
	if len(placements) == 0 {
		// No allocation: a single dsd (or one not allocated yet) serves
		// every shard itself.
		for i := range t.Leaders {
			t.Leaders[i] = views[0].addr
		}
		return t
	}
	type claim struct {
		term uint64
		addr string
	}
	best := make([]claim, t.NShards)
	for _, v := range views {
		for _, g := range v.info.GetCluster().GetShardGroups() {
			sh := int(g.GetShard())
			addr := byID[g.GetLeader()]
			if sh >= t.NShards || addr == "" {
				continue
			}
			if g.GetTerm() >= best[sh].term {
				best[sh] = claim{g.GetTerm(), addr}
			}
		}
	}
	for _, p := range placements {
		sh := int(p.GetShard())
		if sh >= t.NShards {
			continue
		}
		if len(p.GetReplicas()) == 1 {
			t.Leaders[sh] = byID[p.GetReplicas()[0]]
			continue
		}
		if a := best[sh].addr; !answered[a] && asked[a] {
			continue // named in the latest term, but it did not answer: maybe dead
		}
		t.Leaders[sh] = best[sh].addr
	}
	return t
}

// Refusal is what a site's NotLeader refusal (dsd/cluster NotLeaderError,
// sent as UNAVAILABLE) says about a shard.
type Refusal struct {
	Shard int
	// Leader is the leader's address, when the refusal names one.
	Leader string
	// Replicas are the shard's replicas, when the site holds none.
	Replicas []string
}

var (
	reLeader   = regexp.MustCompile(`does not lead shard (\d+); its leader is site \S+ at (\S+)`)
	reReplicas = regexp.MustCompile(`holds no replica of shard (\d+); its replicas are at (\S+)`)
	reShard    = regexp.MustCompile(`(?:lead|leads|of) shard (\d+)|shard (\d+) is replicated`)
)

// ParseRefusal reads a NotLeader refusal from a status message. ok is
// false for any other message.
func ParseRefusal(msg string) (r Refusal, ok bool) {
	if m := reLeader.FindStringSubmatch(msg); m != nil {
		sh, err := strconv.Atoi(m[1])
		return Refusal{Shard: sh, Leader: m[2]}, err == nil
	}
	if m := reReplicas.FindStringSubmatch(msg); m != nil {
		sh, err := strconv.Atoi(m[1])
		return Refusal{Shard: sh, Replicas: strings.Split(m[2], ",")}, err == nil
	}
	if !strings.Contains(msg, "shard") || !(strings.Contains(msg, "retry") || strings.Contains(msg, "leader")) {
		return Refusal{}, false
	}
	if m := reShard.FindStringSubmatch(msg); m != nil {
		s := m[1]
		if s == "" {
			s = m[2]
		}
		sh, err := strconv.Atoi(s)
		return Refusal{Shard: sh}, err == nil
	}
	return Refusal{}, false
}

// IteratorShard reads the shard of a dsd iterator: a version byte (1),
// then a strata.storage.v1.Iterator whose field 1 is the shard.
func IteratorShard(it []byte) (int, bool) {
	if len(it) < 1 || it[0] != 1 {
		return 0, false
	}
	b := it[1:]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, false
			}
			return int(v), true
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
	}
	return 0, true // shard 0 is not encoded
}
