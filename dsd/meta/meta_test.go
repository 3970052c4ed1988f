package meta

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

const (
	siteA = "00000000000000aa"
	siteB = "00000000000000bb"
	siteC = "00000000000000cc"
)

func add(op clusterv1.TransitionOp, site string) *clusterv1.Transition {
	return &clusterv1.Transition{Op: op, Site: site}
}

var (
	opAdd = clusterv1.TransitionOp_TRANSITION_OP_ADD
	opDel = clusterv1.TransitionOp_TRANSITION_OP_DEL
)

func mustApply(t *testing.T, m *Machine, c *clusterv1.Command) {
	t.Helper()
	if err := m.Apply(c); err != nil {
		t.Fatal(err)
	}
}

// TestLifecycle walks a cluster through its commands: sites join, the
// first allocation, set-replicas with a site down (its removal first), a
// claim, a refused claim by another site, completion, and a snapshot that
// restores the same state.
func TestLifecycle(t *testing.T) {
	m := New()
	for _, id := range []string{siteB, siteA} {
		if err := m.AddSite(&clusterv1.Site{Id: id, Address: "addr-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.SiteIDs(); !slices.Equal(got, []string{siteA, siteB}) {
		t.Fatalf("sites %v", got)
	}
	mustApply(t, m, &clusterv1.Command{Command: &clusterv1.Command_Allocate{Allocate: PlanAllocation(2, m.SiteIDs(), 3)}})
	if err := m.Apply(&clusterv1.Command{Command: &clusterv1.Command_Allocate{Allocate: PlanAllocation(2, m.SiteIDs(), 3)}}); !errors.Is(err, ErrAllocated) {
		t.Fatalf("second allocation: %v", err)
	}
	if err := m.AddSite(&clusterv1.Site{Id: siteC}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, m, &clusterv1.Command{Command: &clusterv1.Command_SetSiteStatus{SetSiteStatus: &clusterv1.SetSiteStatus{Site: siteB, Up: false, AtUs: 7}}})
	if s := m.Site(siteB); s.GetUp() || s.GetStatusSinceUs() != 7 {
		t.Fatalf("site b after down: %v", s)
	}
	// set-replicas a, c: b is down, so its removal comes before the add.
	mustApply(t, m, &clusterv1.Command{Command: &clusterv1.Command_SetTargets{SetTargets: &clusterv1.SetTargets{Shards: []*clusterv1.ShardPlacement{{Shard: 0, Targets: []string{siteC, siteA}}}}}})
	sp := m.State().GetMessages().GetShards()[0]
	var plan []string
	for _, tr := range sp.GetTransitions() {
		plan = append(plan, TransitionString(tr))
	}
	if want := []string{"-" + siteB, "+" + siteC}; !slices.Equal(plan, want) {
		t.Fatalf("plan %v, want %v", plan, want)
	}
	// Only the next transition can be claimed or completed.
	claim := func(tr *clusterv1.Transition, by string) error {
		return m.Apply(&clusterv1.Command{Command: &clusterv1.Command_ClaimTransition{ClaimTransition: &clusterv1.ClaimTransition{Shard: 0, Transition: tr, Site: by, AtUs: 9}}})
	}
	if err := claim(add(opAdd, siteC), siteA); !errors.Is(err, ErrNotNext) {
		t.Fatalf("claim of the second transition: %v", err)
	}
	if err := claim(add(opDel, siteB), siteA); err != nil {
		t.Fatal(err)
	}
	if err := claim(add(opDel, siteB), siteC); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claim by another site: %v", err)
	}
	if err := claim(add(opDel, siteB), siteA); err != nil {
		t.Fatalf("a claimant resumes its own claim: %v", err)
	}
	snap := m.Snapshot()
	mustApply(t, m, &clusterv1.Command{Command: &clusterv1.Command_CompleteTransition{CompleteTransition: &clusterv1.CompleteTransition{Shard: 0, Transition: add(opDel, siteB)}}})
	if got := m.State().GetMessages().GetShards()[0].GetReplicas(); !slices.Equal(got, []string{siteA}) {
		t.Fatalf("replicas after -b: %v", got)
	}
	r := New()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if first := r.State().GetMessages().GetShards()[0].GetTransitions()[0]; first.GetClaimedBy() != siteA {
		t.Fatalf("claim lost in the snapshot: %v", first)
	}
	again := New()
	_ = again.Restore(r.Snapshot())
	if !proto.Equal(again.State(), r.State()) {
		t.Fatal("snapshot of a restored state differs")
	}
}

func TestNodeID(t *testing.T) {
	for _, bad := range []string{"", "0000000000000000", "zz000000000000aa", "aa"} {
		if _, err := NodeID(bad); err == nil {
			t.Errorf("NodeID(%q) accepted", bad)
		}
	}
	id, err := NodeID("8000000000000001")
	if err != nil || SiteID(id) != "8000000000000001" {
		t.Fatalf("round trip: %x %v", id, err)
	}
}
