package dsdbackend

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// TestShardOfMatchesDSD pins ShardOf to values dsd's storage.ShardOf
// gives (the gateway may not import the storage): a session's calls and
// its Stores go to the leader of the shard dsd puts them in.
func TestShardOfMatchesDSD(t *testing.T) {
	for _, c := range []struct {
		id      string
		n, want int
	}{
		{"", 1, 0}, {"", 4, 1}, {"", 16, 5},
		{"a", 4, 0}, {"a", 16, 12},
		{"pub-0", 4, 1}, {"pub-0", 16, 1},
		{"client-42", 4, 3}, {"client-42", 16, 15},
		{"sites-pub-7", 4, 1}, {"sites-pub-7", 16, 5},
		{"ünïcode", 4, 3}, {"ünïcode", 16, 11},
	} {
		if got := ShardOf(c.id, c.n); got != c.want {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", c.id, c.n, got, c.want)
		}
	}
}

func TestParseAddrs(t *testing.T) {
	got, err := ParseAddrs("127.0.0.1:7070")
	if err != nil || !slices.Equal(got, []string{"127.0.0.1:7070"}) {
		t.Fatalf("one address: %v %v", got, err)
	}
	got, err = ParseAddrs("a:1, b:2,c:3")
	if err != nil || !slices.Equal(got, []string{"a:1", "b:2", "c:3"}) {
		t.Fatalf("a list: %v %v", got, err)
	}
	for _, bad := range []string{"", "a:1,", "a:1,,b:2", "a:1,a:1"} {
		if _, err := ParseAddrs(bad); err == nil {
			t.Errorf("ParseAddrs(%q) accepted", bad)
		}
	}
}

// TestParseRefusal reads each form of dsd/cluster's NotLeaderError, as
// dsd sends it (UNAVAILABLE, the error's text, maybe wrapped).
func TestParseRefusal(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want Refusal
		ok   bool
	}{
		{"cluster: this site does not lead shard 3; its leader is site 0a1b2c3d4e5f6071 at 127.0.0.1:7071",
			Refusal{Shard: 3, Leader: "127.0.0.1:7071"}, true},
		{"ingest: store 9: cluster: this site does not lead shard 12; its leader is site ff at [::1]:7070",
			Refusal{Shard: 12, Leader: "[::1]:7070"}, true},
		{"cluster: this site holds no replica of shard 2; its replicas are at a:1,b:2",
			Refusal{Shard: 2, Replicas: []string{"a:1", "b:2"}}, true},
		{"cluster: this site does not lead shard 5, and no leader is known yet; retry", Refusal{Shard: 5}, true},
		{"cluster: shard 7 is replicated and its raft group is not running here yet; retry", Refusal{Shard: 7}, true},
		{"cluster: this site leads shard 1 but a majority of its replicas has not acknowledged it within the last 500ms: it may have been deposed; retry",
			Refusal{Shard: 1}, true},
		{"dsd: server stopping", Refusal{}, false},
		{"storage: shard 3 does not exist", Refusal{}, false},
	} {
		got, ok := ParseRefusal(c.msg)
		if ok != c.ok || got.Shard != c.want.Shard || got.Leader != c.want.Leader || !slices.Equal(got.Replicas, c.want.Replicas) {
			t.Errorf("ParseRefusal(%q) = %+v %v, want %+v %v", c.msg, got, ok, c.want, c.ok)
		}
	}
}

// info builds a site's Info answer: sites by id → address, per shard its
// replicas, and the shard groups' leaders and terms as that site sees
// them.
func info(self string, nShards int, sites map[string]string, replicas [][]string, groups map[int][2]any) *dsdv1.InfoResponse {
	st := &clusterv1.MetaState{Messages: &clusterv1.DurableStorage{NShards: uint32(nShards)}}
	ids := make([]string, 0, len(sites))
	for id := range sites {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		st.Sites = append(st.Sites, &clusterv1.Site{Id: id, Address: sites[id]})
	}
	for sh, r := range replicas {
		st.Messages.Shards = append(st.Messages.Shards, &clusterv1.ShardPlacement{Shard: uint32(sh), Replicas: r})
	}
	ci := &dsdv1.ClusterInfo{State: st}
	for sh, g := range groups {
		ci.ShardGroups = append(ci.ShardGroups, &dsdv1.ShardGroupInfo{Shard: uint32(sh), Leader: g[0].(string), Term: g[1].(uint64)})
	}
	return &dsdv1.InfoResponse{Site: self, NShards: uint32(nShards), Cluster: ci}
}

// TestBuildTable: one dsd leads every shard; replicated shards are led by
// the leader named with the highest term; a leader that was asked and
// did not answer is not trusted (the shard's leader is unknown: its calls
// go to the default site, which names the new one); a shard of one
// replica is led by it.
func TestBuildTable(t *testing.T) {
	single := buildTable([]siteView{{addr: "d:1", info: &dsdv1.InfoResponse{NShards: 4}}}, map[string]bool{"d:1": true})
	if single.Multi() || single.NShards != 4 || !slices.Equal(single.Leaders, []string{"d:1", "d:1", "d:1", "d:1"}) || !single.Complete() {
		t.Fatalf("one dsd: %+v", single)
	}
	if single.ShardOf("anything") != ShardOf("anything", 4) || single.Leader(-1) != "d:1" {
		t.Fatalf("one dsd routes elsewhere: %+v", single)
	}

	sites := map[string]string{"a": "a:1", "b": "b:1", "c": "c:1"}
	all := []string{"a", "b", "c"}
	replicas := [][]string{all, all, all, {"c"}}
	// a led shard 0 in term 2; b knows that c leads it in term 3.
	va := siteView{addr: "a:1", info: info("a", 4, sites, replicas, map[int][2]any{0: {"a", uint64(2)}, 1: {"b", uint64(1)}})}
	vb := siteView{addr: "b:1", info: info("b", 4, sites, replicas, map[int][2]any{0: {"c", uint64(3)}, 1: {"b", uint64(1)}, 2: {"a", uint64(1)}})}
	asked := map[string]bool{"a:1": true, "b:1": true, "c:1": true}
	tab := buildTable([]siteView{va, vb}, asked)
	if !tab.Multi() || !slices.Equal(tab.Sites, []string{"a:1", "b:1", "c:1"}) || tab.Default != "a:1" {
		t.Fatalf("sites: %+v", tab)
	}
	// Shard 0: c (term 3) did not answer: unknown. Shard 1: b. Shard 2: a
	// (answered). Shard 3: its one replica, c.
	if want := []string{"", "b:1", "a:1", "c:1"}; !slices.Equal(tab.Leaders, want) {
		t.Fatalf("leaders %q, want %q", tab.Leaders, want)
	}
	if tab.Complete() || tab.Leader(0) != "a:1" || tab.LeadsAny("c:1") != true {
		t.Fatalf("routing: complete %v, shard 0 → %s", tab.Complete(), tab.Leader(0))
	}
	// Not asked (a site the table did not know yet): trusted.
	tab = buildTable([]siteView{va, vb}, map[string]bool{"a:1": true, "b:1": true})
	if tab.Leaders[0] != "c:1" {
		t.Fatalf("shard 0 → %q, want c:1 (named in the highest term)", tab.Leaders[0])
	}
	// A refusal naming a leader updates one shard; the same leader
	// changes nothing.
	moved := tab.withLeader(1, "c:1")
	if moved.Leaders[1] != "c:1" || tab.Leaders[1] != "b:1" || moved.withLeader(1, "c:1") != moved {
		t.Fatalf("withLeader: %q (was %q)", moved.Leaders, tab.Leaders)
	}
	// A dsd that advertises an address the gateway does not use (bound to
	// 0.0.0.0, say) is dialled where it was reached, and a refusal naming
	// the advertised address means it.
	one := siteView{addr: "10.0.0.1:7070", info: info("s", 2, map[string]string{"s": "0.0.0.0:7070"}, [][]string{{"s"}, {"s"}}, nil)}
	tab = buildTable([]siteView{one}, map[string]bool{"10.0.0.1:7070": true})
	if tab.Multi() || !slices.Equal(tab.Leaders, []string{"10.0.0.1:7070", "10.0.0.1:7070"}) || tab.Aliases["0.0.0.0:7070"] != "10.0.0.1:7070" {
		t.Fatalf("one dsd advertising another address: %+v", tab)
	}
	if tab.withLeader(1, "0.0.0.0:7070") != tab {
		t.Fatal("a refusal naming the advertised address moved the shard")
	}
	if buildTable(nil, asked) != nil {
		t.Fatal("a table from no answer")
	}
}

func TestIteratorShard(t *testing.T) {
	for _, shard := range []uint32{0, 1, 15, 300} {
		b, err := proto.Marshal(&storagev1.Iterator{Shard: shard, Generation: 9, StaticIndex: []byte{1, 2}, TopicFilter: "a/#", StartTimeUs: 5})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := IteratorShard(append([]byte{1}, b...))
		if !ok || got != int(shard) {
			t.Errorf("shard %d: read %d %v", shard, got, ok)
		}
	}
	for _, bad := range [][]byte{nil, {2, 8, 1}, {1, 0xff}} {
		if _, ok := IteratorShard(bad); ok {
			t.Errorf("IteratorShard(%v) read a shard", bad)
		}
	}
}
