package storage

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

var sharedModelSeeds = flag.Int("shared.seeds", 30, "seeds of TestSharedModel")

// sharedModel is what the group's grants must be after each step.
type sharedModel struct {
	cursor int
	grants map[uint64]*modelGrant // outstanding
	acked  map[int]bool           // ranges finished
	// recorded are the grants each member's session has records of; done
	// those it finished without the group hearing of it yet.
	recorded, done map[string]map[uint64]bool
	nextID         uint64
}

type modelGrant struct {
	member     string // "" waiting
	guard      uint64
	rng        int // the range [rng, rng+1) of the stream
	qos2       bool
	redelivery bool
}

// TestSharedModel drives a group with random grants, hand-overs, acks,
// members' ends of every kind and reopens, against a model of the rules
// (shared.go): a waiting grant goes to the next member as a redelivery; a
// member's end returns its grants but a recorded QoS 2 one (kept, dropped
// at a final end); a resumed session keeps what it recorded; a broken link
// keeps every QoS 2 grant; acks forget a grant only for its holder. After
// each step the DB's grants equal the model's, and every range up to the
// cursor is granted or finished: nothing is lost, and a range is never
// held twice.
func TestSharedModel(t *testing.T) {
	for seed := range *sharedModelSeeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runSharedModel(t, uint64(seed)) })
	}
}

func runSharedModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	e := newSessEnv(t, 4)
	live := func(string) bool { return true } // the group has a connected member: never forgotten
	e.db.SetSharedLive(live)
	ctx := context.Background()
	members := []string{"a", "b", "c"}
	guards := map[string]uint64{"a": 1, "b": 1, "c": 1}
	for _, mb := range members {
		e.openSess(mb, "u", true, 100, "gw") // connected: Open's reconciliation leaves their grants alone
	}
	m := &sharedModel{grants: map[uint64]*modelGrant{}, acked: map[int]bool{}, recorded: map[string]map[uint64]bool{}, done: map[string]map[uint64]bool{}}
	set := func(mm map[string]map[uint64]bool, member string, id uint64) {
		if mm[member] == nil {
			mm[member] = map[uint64]bool{}
		}
		mm[member][id] = true
	}
	ids := func(mm map[string]map[uint64]bool, member string) []uint64 {
		var out []uint64
		for id := range mm[member] {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	for step := range 200 {
		member := members[rng.IntN(len(members))]
		switch op := rng.IntN(12); {
		case op >= 10: // a new reader of the stream: what the member does not hold goes back
			held := append(ids(m.recorded, member), ids(m.done, member)...)
			if err := e.db.ReturnUnheld(ctx, testGroup, member, guards[member], testStream, held); err != nil {
				t.Fatal(err)
			}
			for _, id := range sortedKeys(m.grants) {
				if g := m.grants[id]; g.member == member && g.guard <= guards[member] && !slices.Contains(held, id) {
					g.member, g.redelivery = "", true
				}
			}
		case op < 3: // a new grant
			qos2 := rng.IntN(3) == 0
			id, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Member: member, Guard: guards[member], Shard: 0, Generation: 1,
				StaticIndex: []byte("s"), ItBegin: []byte(fmt.Sprint(m.cursor)), ItEnd: []byte(fmt.Sprint(m.cursor + 1)), Count: 1, Qos2: qos2})
			if err != nil {
				t.Fatal(err)
			}
			m.nextID++
			if id != m.nextID {
				t.Fatalf("step %d: grant id %d, want %d", step, id, m.nextID)
			}
			m.grants[id] = &modelGrant{member: member, guard: guards[member], rng: m.cursor, qos2: qos2}
			m.cursor++
		case op < 4: // the waiting grant goes to member
			w := e.db.SharedStream(testGroup, testStream).Waiting
			var want uint64
			for _, id := range sortedKeys(m.grants) {
				if m.grants[id].member == "" {
					want = id
					break
				}
			}
			if w.GetId() != want {
				t.Fatalf("step %d: waiting grant %d, model %d", step, w.GetId(), want)
			}
			if w == nil {
				continue
			}
			qos2 := rng.IntN(3) == 0
			if _, err := e.db.GrantShared(ctx, testGroup, &storagev1.SharedGrant{Id: w.Id, Member: member, Guard: guards[member], Qos2: qos2}); err != nil {
				t.Fatal(err)
			}
			g := m.grants[w.Id]
			g.member, g.guard, g.qos2, g.redelivery = member, guards[member], qos2, true
		case op < 5: // member records one of its grants (its session commit), or finishes a recorded one quietly
			for _, id := range sortedKeys(m.grants) {
				if m.grants[id].member != member {
					continue
				}
				if m.recorded[member][id] && rng.IntN(2) == 0 {
					delete(m.recorded[member], id)
					set(m.done, member, id) // in its ring's done_grants; the link's ack lost
				} else {
					set(m.recorded, member, id)
				}
				break
			}
		case op < 7: // member finishes its oldest grant, or someone acks another's
			for _, id := range sortedKeys(m.grants) {
				g := m.grants[id]
				if g.member == "" {
					continue
				}
				acker := g.member
				if rng.IntN(4) == 0 {
					acker = member // maybe not the holder: must be ignored
				}
				if err := e.db.AckShared(ctx, testGroup, acker, id); err != nil {
					t.Fatal(err)
				}
				if acker == g.member {
					delete(m.grants, id)
					m.acked[g.rng] = true
					delete(m.recorded[acker], id)
				}
				break
			}
		case op < 9: // member's connection or membership ends
			d := SharedDown{Member: member, Guard: guards[member], Recorded: ids(m.recorded, member), Done: ids(m.done, member)}
			switch rng.IntN(4) {
			case 0:
				d.Final = true
			case 1:
				d.Resumed = true
			case 2:
				d.KeepQoS2 = true
			}
			if err := e.db.SharedMembersDown(ctx, []SharedDown{d}); err != nil {
				t.Fatal(err)
			}
			for _, id := range sortedKeys(m.grants) {
				g := m.grants[id]
				if g.member != member || g.guard > d.Guard {
					continue
				}
				recorded := m.recorded[member][id]
				switch {
				case m.done[member][id]:
					delete(m.grants, id)
					m.acked[g.rng] = true
				case recorded && d.Resumed:
				case g.qos2 && (recorded || d.KeepQoS2):
					if d.Final {
						delete(m.grants, id)
						m.acked[g.rng] = true // dropped (counted): not to another member
					}
				default:
					g.member, g.redelivery = "", true
				}
			}
			if d.Final {
				delete(m.recorded, member)
			}
			delete(m.done, member)
			guards[member]++ // its next connection
		default:
			e.reopen()
			e.db.SetSharedLive(live)
		}
		checkSharedModel(t, step, e.db, m)
	}
}

func checkSharedModel(t *testing.T, step int, db *DB, m *sharedModel) {
	t.Helper()
	got := db.SharedGrants(testGroup)
	if len(got) != len(m.grants) {
		t.Fatalf("step %d: %d grants, model %d", step, len(got), len(m.grants))
	}
	held := map[int]bool{}
	for _, g := range got {
		w := m.grants[g.Id]
		if w == nil || g.Member != w.member || g.Qos2 != w.qos2 || g.Redelivery != w.redelivery || string(g.ItBegin) != fmt.Sprint(w.rng) {
			t.Fatalf("step %d: grant %v, model %+v", step, g, w)
		}
		if held[w.rng] {
			t.Fatalf("step %d: range %d held twice", step, w.rng)
		}
		held[w.rng] = true
	}
	for r := range m.cursor {
		if !held[r] && !m.acked[r] {
			t.Fatalf("step %d: range %d lost", step, r)
		}
	}
	if c := db.SharedStream(testGroup, testStream).Cursor; m.cursor > 0 && string(c) != fmt.Sprint(m.cursor) {
		t.Fatalf("step %d: cursor %q, model %d", step, c, m.cursor)
	}
}
