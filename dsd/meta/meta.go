// Package meta is the state machine of the metadata raft group: the sites
// of the cluster (id, address, node name, up or down), and per shard of
// the "messages" durable storage its replica set, target set and pending
// transitions. It is pure: commands in, state out, no I/O and no clocks
// (times come in the commands), so every site that applies the same log
// holds the same state. dsd/cluster drives it from raft.
//
// Sites become members by raft conf changes whose context is their Site
// (AddSite); everything else is a Command (Apply). A command that does not
// fit the state (a transition that is not the shard's next one, an
// allocation after the first) is refused with an error and changes
// nothing; every site refuses it alike.
//
// Snapshots are a version byte (1) and the deterministic protobuf
// encoding of the MetaState.
package meta

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/placement"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// StorageName is the one durable storage.
const StorageName = "messages"

// Errors of Apply: the command was refused and changed nothing.
var (
	ErrUnknownSite      = errors.New("meta: unknown site")
	ErrAllocated        = errors.New("meta: shards are already allocated")
	ErrNotAllocated     = errors.New("meta: shards are not allocated yet")
	ErrUnknownShard     = errors.New("meta: unknown shard")
	ErrNotNext          = errors.New("meta: not the shard's next transition")
	ErrClaimed          = errors.New("meta: transition claimed by another site")
	ErrEmptyCommand     = errors.New("meta: empty command")
	ErrBadSnapshot      = errors.New("meta: bad snapshot")
	ErrBadSiteID        = errors.New("meta: bad site id")
	ErrTargetsMalformed = errors.New("meta: malformed targets")
)

// snapshotVersion1 is the first byte of a snapshot.
const snapshotVersion1 byte = 1

// Machine holds the state. It is not safe for concurrent use; its owner
// (the group's apply loop) hands out clones.
type Machine struct {
	state *clusterv1.MetaState
}

// New returns the state before any entry: no sites, nothing allocated.
func New() *Machine {
	return &Machine{state: &clusterv1.MetaState{Messages: &clusterv1.DurableStorage{Name: StorageName}}}
}

// State returns a copy of the state.
func (m *Machine) State() *clusterv1.MetaState {
	return proto.Clone(m.state).(*clusterv1.MetaState)
}

// Site returns a copy of the member with id, or nil.
func (m *Machine) Site(id string) *clusterv1.Site {
	if s := m.site(id); s != nil {
		return proto.Clone(s).(*clusterv1.Site)
	}
	return nil
}

func (m *Machine) site(id string) *clusterv1.Site {
	i, ok := slices.BinarySearchFunc(m.state.Sites, id, func(s *clusterv1.Site, id string) int { return cmpString(s.GetId(), id) })
	if !ok {
		return nil
	}
	return m.state.Sites[i]
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SiteIDs returns the member ids, sorted.
func (m *Machine) SiteIDs() []string {
	ids := make([]string, len(m.state.Sites))
	for i, s := range m.state.Sites {
		ids[i] = s.GetId()
	}
	return ids
}

// Allocated reports whether the shards have their first allocation.
func (m *Machine) Allocated() bool { return len(m.state.GetMessages().GetShards()) > 0 }

// AddSite records a member added by a raft conf change, or updates its
// address and node name when it is one already (a conf change applied
// again after a restart). A new member starts up.
func (m *Machine) AddSite(s *clusterv1.Site) error {
	if _, err := NodeID(s.GetId()); err != nil {
		return err
	}
	if cur := m.site(s.GetId()); cur != nil {
		cur.Address, cur.Node = s.GetAddress(), s.GetNode()
		return nil
	}
	add := proto.Clone(s).(*clusterv1.Site)
	add.Up = true
	i, _ := slices.BinarySearchFunc(m.state.Sites, add.GetId(), func(s *clusterv1.Site, id string) int { return cmpString(s.GetId(), id) })
	m.state.Sites = slices.Insert(m.state.Sites, i, add)
	return nil
}

// RemoveSite forgets a member removed by a raft conf change.
func (m *Machine) RemoveSite(id string) {
	m.state.Sites = slices.DeleteFunc(m.state.Sites, func(s *clusterv1.Site) bool { return s.GetId() == id })
}

// Apply applies one command. A refused command returns an error and
// changes nothing.
func (m *Machine) Apply(c *clusterv1.Command) error {
	switch c := c.GetCommand().(type) {
	case *clusterv1.Command_SetSite:
		cur := m.site(c.SetSite.GetSite().GetId())
		if cur == nil {
			return fmt.Errorf("%w: %s", ErrUnknownSite, c.SetSite.GetSite().GetId())
		}
		cur.Address, cur.Node = c.SetSite.GetSite().GetAddress(), c.SetSite.GetSite().GetNode()
	case *clusterv1.Command_SetSiteStatus:
		cur := m.site(c.SetSiteStatus.GetSite())
		if cur == nil {
			return fmt.Errorf("%w: %s", ErrUnknownSite, c.SetSiteStatus.GetSite())
		}
		if cur.Up != c.SetSiteStatus.GetUp() {
			cur.Up, cur.StatusSinceUs = c.SetSiteStatus.GetUp(), c.SetSiteStatus.GetAtUs()
		}
	case *clusterv1.Command_Allocate:
		return m.allocate(c.Allocate)
	case *clusterv1.Command_SetTargets:
		return m.setTargets(c.SetTargets)
	case *clusterv1.Command_ClaimTransition:
		return m.claim(c.ClaimTransition)
	case *clusterv1.Command_CompleteTransition:
		return m.complete(c.CompleteTransition)
	default:
		return ErrEmptyCommand
	}
	return nil
}

func (m *Machine) allocate(a *clusterv1.Allocate) error {
	if m.Allocated() {
		return ErrAllocated
	}
	if int(a.GetNShards()) != len(a.GetShards()) || a.GetNShards() == 0 {
		return fmt.Errorf("%w: %d shards for n_shards %d", ErrTargetsMalformed, len(a.GetShards()), a.GetNShards())
	}
	shards := make([]*clusterv1.ShardPlacement, len(a.GetShards()))
	for i, s := range a.GetShards() {
		if s.GetShard() != uint32(i) {
			return fmt.Errorf("%w: shard %d at position %d", ErrTargetsMalformed, s.GetShard(), i)
		}
		shards[i] = &clusterv1.ShardPlacement{Shard: uint32(i), Replicas: slices.Clone(s.GetReplicas()), Targets: slices.Clone(s.GetReplicas())}
	}
	ms := m.state.Messages
	ms.NShards, ms.ReplicationFactor, ms.Shards = a.GetNShards(), a.GetReplicationFactor(), shards
	return nil
}

// setTargets sets each named shard's targets and replans its transitions:
// lost (down) sites are removed first (dsd/placement). A claimed first
// transition that the new plan still starts with stays claimed.
func (m *Machine) setTargets(st *clusterv1.SetTargets) error {
	if !m.Allocated() {
		return ErrNotAllocated
	}
	shards := m.state.Messages.Shards
	for _, s := range st.GetShards() {
		if int(s.GetShard()) >= len(shards) {
			return fmt.Errorf("%w: %d", ErrUnknownShard, s.GetShard())
		}
		for _, site := range s.GetTargets() {
			if m.site(site) == nil {
				return fmt.Errorf("%w: %s", ErrUnknownSite, site)
			}
		}
	}
	lost := func(site string) bool {
		s := m.site(site)
		return s == nil || !s.GetUp()
	}
	for _, s := range st.GetShards() {
		sp := shards[s.GetShard()]
		targets := slices.Clone(s.GetTargets())
		slices.Sort(targets)
		var claimed *clusterv1.Transition
		if len(sp.Transitions) > 0 && sp.Transitions[0].GetClaimedBy() != "" {
			claimed = sp.Transitions[0]
		}
		sp.Targets = slices.Compact(targets)
		sp.Transitions = nil
		for _, t := range placement.Plan(sp.GetReplicas(), sp.GetTargets(), lost) {
			sp.Transitions = append(sp.Transitions, toProto(t))
		}
		if claimed != nil && len(sp.Transitions) > 0 && sameTransition(sp.Transitions[0], claimed) {
			sp.Transitions[0] = claimed
		}
	}
	return nil
}

func (m *Machine) next(shard uint32, t *clusterv1.Transition) (*clusterv1.ShardPlacement, error) {
	shards := m.state.GetMessages().GetShards()
	if int(shard) >= len(shards) {
		return nil, fmt.Errorf("%w: %d", ErrUnknownShard, shard)
	}
	sp := shards[shard]
	if len(sp.Transitions) == 0 || !sameTransition(sp.Transitions[0], t) {
		return nil, fmt.Errorf("%w: shard %d, %s", ErrNotNext, shard, fromProto(t))
	}
	return sp, nil
}

func (m *Machine) claim(c *clusterv1.ClaimTransition) error {
	sp, err := m.next(c.GetShard(), c.GetTransition())
	if err != nil {
		return err
	}
	first := sp.Transitions[0]
	if by := first.GetClaimedBy(); by != "" && by != c.GetSite() {
		return fmt.Errorf("%w: shard %d, %s by %s", ErrClaimed, c.GetShard(), fromProto(first), by)
	}
	first.ClaimedBy, first.ClaimedAtUs = c.GetSite(), c.GetAtUs()
	return nil
}

func (m *Machine) complete(c *clusterv1.CompleteTransition) error {
	sp, err := m.next(c.GetShard(), c.GetTransition())
	if err != nil {
		return err
	}
	sp.Replicas = placement.Apply(sp.Replicas, fromProto(sp.Transitions[0]))
	sp.Transitions = sp.Transitions[1:]
	return nil
}

func sameTransition(a, b *clusterv1.Transition) bool {
	return a.GetOp() == b.GetOp() && a.GetSite() == b.GetSite()
}

func toProto(t placement.Transition) *clusterv1.Transition {
	op := clusterv1.TransitionOp_TRANSITION_OP_ADD
	if t.Op == placement.Del {
		op = clusterv1.TransitionOp_TRANSITION_OP_DEL
	}
	return &clusterv1.Transition{Op: op, Site: t.Site}
}

func fromProto(t *clusterv1.Transition) placement.Transition {
	op := placement.Add
	if t.GetOp() == clusterv1.TransitionOp_TRANSITION_OP_DEL {
		op = placement.Del
	}
	return placement.Transition{Op: op, Site: t.GetSite()}
}

// TransitionString is "+site" or "-site".
func TransitionString(t *clusterv1.Transition) string { return fromProto(t).String() }

// PlanAllocation is the first allocation of nShards over sites with
// replication factor rf, as an Allocate command (dsd/placement).
func PlanAllocation(nShards int, sites []string, rf int) *clusterv1.Allocate {
	a := &clusterv1.Allocate{NShards: uint32(nShards), ReplicationFactor: uint32(rf)}
	for shard, set := range placement.Allocate(nShards, sites, rf) {
		a.Shards = append(a.Shards, &clusterv1.ShardPlacement{Shard: uint32(shard), Replicas: set})
	}
	return a
}

// Snapshot encodes the state.
func (m *Machine) Snapshot() []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.state)
	if err != nil {
		// Invariant: a MetaState always marshals.
		panic(fmt.Sprintf("meta: marshal state: %v", err))
	}
	return append([]byte{snapshotVersion1}, b...)
}

// Restore replaces the state with a snapshot's.
func (m *Machine) Restore(data []byte) error {
	if len(data) == 0 || data[0] != snapshotVersion1 {
		return fmt.Errorf("%w: version", ErrBadSnapshot)
	}
	st := &clusterv1.MetaState{}
	if err := proto.Unmarshal(data[1:], st); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if st.Messages == nil {
		st.Messages = &clusterv1.DurableStorage{Name: StorageName}
	}
	m.state = st
	return nil
}

// NodeID is a site id as a raft node id: its 8 bytes, big-endian. Raft
// reserves 0, which a random id never is in practice and is refused.
func NodeID(site string) (uint64, error) {
	if len(site) != 16 {
		return 0, fmt.Errorf("%w: %q", ErrBadSiteID, site)
	}
	if _, err := hex.DecodeString(site); err != nil {
		return 0, fmt.Errorf("%w: %q", ErrBadSiteID, site)
	}
	id, err := strconv.ParseUint(site, 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: %q", ErrBadSiteID, site)
	}
	return id, nil
}

// SiteID is the site id of a raft node id.
func SiteID(node uint64) string { return fmt.Sprintf("%016x", node) }
