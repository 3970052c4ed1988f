package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// sharedScript is the state of one shared-group script: one dsd, one
// gateway link whose scheduler has one worker (so turns are deterministic),
// and the members' shared Read entries.
type sharedScript struct {
	t        *testing.T
	e        *linkEnv
	l        *client.Link
	ev       *events
	group    string
	strategy string
	start    int64
	members  map[string]*scriptMember
	byEntry  map[uint64]*scriptMember
	seq      map[string]int // next payload number per publisher
}

type scriptMember struct {
	name    string
	ref     *dsdv1.SessionRef
	entries []uint64
	unacked []unackedGrant // batches pushed and not acked
}

type unackedGrant struct {
	entry, seq, grant uint64
}

// TestSharedStrategies runs testdata/shared_* : which member each batch of
// a shared group goes to, per strategy, and the hand-over of a departed
// member's grants.
//
//	setup strategy=S topics=a,b   a dsd, a link, streams for the topics
//	member name=m [window=N]      a session and its shared entries (one per topic)
//	publish topic=T from=P [n=N]  N messages; prints the batches they came in
//	ack name=m                    m finishes every batch it holds
//	disconnect name=m             m's connection ends (its entries go, grants return)
//	grants                        the group's grants
func TestSharedStrategies(t *testing.T) {
	datadriven.Walk(t, "testdata/shared", func(t *testing.T, path string) {
		var s *sharedScript
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd == "setup" {
				s = newSharedScript(t, d)
				return ""
			}
			return s.run(t, d)
		})
	})
}

func arg(d *datadriven.TestData, key, def string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key && len(a.Vals) > 0 {
			return a.Vals[0]
		}
	}
	return def
}

func newSharedScript(t *testing.T, d *datadriven.TestData) *sharedScript {
	e := startLinkServer(t, GatewayLinkOptions{Workers: 1})
	s := &sharedScript{t: t, e: e, members: map[string]*scriptMember{}, byEntry: map[uint64]*scriptMember{}, seq: map[string]int{}}
	s.strategy = arg(d, "strategy", "round_robin")
	s.group = "$share/g/" + arg(d, "filter", "s/+")
	// Each publisher's messages go to its own shard: a message before the
	// group's start makes each (topic, publisher) stream.
	for _, topic := range strings.Split(arg(d, "topics", "s/1"), ",") {
		for _, p := range strings.Split(arg(d, "publishers", "p"), ",") {
			e.store(p, topic, []byte("before"))
		}
	}
	s.start = e.db.Watermarks()[0]
	for _, w := range e.db.Watermarks() {
		s.start = max(s.start, w)
	}
	s.l = e.open()
	s.ev = recvAll(s.l)
	return s
}

func (s *sharedScript) run(t *testing.T, d *datadriven.TestData) string {
	ctx := context.Background()
	switch d.Cmd {
	case "member":
		name := arg(d, "name", "")
		o, err := s.e.c.Sessions().OpenSession(ctx, openReq(name, "", "gw-test", 1))
		if err != nil {
			t.Fatal(err)
		}
		m := &scriptMember{name: name, ref: &dsdv1.SessionRef{ClientId: name, Guard: o.GetGuard()}}
		s.members[name] = m
		var window uint32 = 100
		fmt.Sscan(arg(d, "window", "100"), &window)
		streams, err := s.e.db.GetStreams(strings.TrimPrefix(s.group, "$share/g/"), s.start, -1)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range streams {
			it, err := s.e.db.MakeIterator(st, strings.TrimPrefix(s.group, "$share/g/"), s.start)
			if err != nil {
				t.Fatal(err)
			}
			id, err := s.l.AddSharedRead(m.ref, it, window, 100, &dsdv1.SharedRead{Filter: s.group, Qos: 1, Strategy: s.strategy})
			if err != nil {
				t.Fatal(err)
			}
			m.entries = append(m.entries, id)
			s.byEntry[id] = m
		}
		return ""
	case "publish":
		topic, from := arg(d, "topic", "s/1"), arg(d, "from", "p")
		n := 1
		fmt.Sscan(arg(d, "n", "1"), &n)
		var out strings.Builder
		for range n {
			payload := fmt.Sprintf("%s:%d", from, s.seq[from])
			s.seq[from]++
			if _, err := s.e.c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: from, Messages: []*storagev1.Message{{Topic: topic, Payload: []byte(payload), Qos: 1}}}); err != nil {
				t.Fatal(err)
			}
			// One message at a time: its batch comes before the next store.
			out.WriteString(s.collect(t, 1))
		}
		return out.String()
	case "settle":
		n := 1
		fmt.Sscan(arg(d, "n", "1"), &n)
		return s.collect(t, n)
	case "ack":
		m := s.members[arg(d, "name", "")]
		for _, u := range m.unacked {
			if err := s.l.Ack(u.entry, u.seq); err != nil {
				t.Fatal(err)
			}
			if err := s.l.Send(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_SharedAck{SharedAck: &dsdv1.SharedAck{
				Filter: s.group, Grant: u.grant, Session: m.ref}}}); err != nil {
				t.Fatal(err)
			}
		}
		m.unacked = nil
		s.waitGrants(t, func(gs []*storagev1.SharedGrant) bool {
			return !slices.ContainsFunc(gs, func(g *storagev1.SharedGrant) bool { return g.Member == m.name })
		})
		return ""
	case "disconnect":
		m := s.members[arg(d, "name", "")]
		for _, id := range m.entries {
			if err := s.l.Remove(id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.e.c.Sessions().Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: m.name, Guard: m.ref.Guard, Abnormal: true}); err != nil {
			t.Fatal(err)
		}
		s.waitGrants(t, func(gs []*storagev1.SharedGrant) bool {
			return !slices.ContainsFunc(gs, func(g *storagev1.SharedGrant) bool { return g.Member == m.name })
		})
		return ""
	case "grants":
		var out strings.Builder
		for _, g := range s.e.db.SharedGrants(s.group) {
			member := g.Member
			if member == "" {
				member = "(waiting)"
			}
			fmt.Fprintf(&out, "grant %d: %s, %d messages, redelivery=%t\n", g.Id, member, g.Count, g.Redelivery)
		}
		return out.String()
	}
	t.Fatalf("unknown command %q", d.Cmd)
	return ""
}

// collect reads batches until n messages came, and prints them.
func (s *sharedScript) collect(t *testing.T, n int) string {
	var lines []string
	for got := 0; got < n; {
		b := s.ev.batch(t)
		m := s.byEntry[b.GetEntryId()]
		if m == nil {
			t.Fatalf("a batch for unknown entry %d", b.GetEntryId())
		}
		g := b.GetGrant()
		m.unacked = append(m.unacked, unackedGrant{entry: b.GetEntryId(), seq: b.GetBatchSeq(), grant: g.GetId()})
		line := fmt.Sprintf("%s <- %s (grant %d", m.name, strings.Join(payloads(b), " "), g.GetId())
		if g.GetRedelivery() {
			line += ", redelivery"
		}
		lines = append(lines, line+")")
		got += len(b.GetMessages())
	}
	return strings.Join(lines, "\n") + "\n"
}

func (s *sharedScript) waitGrants(t *testing.T, cond func([]*storagev1.SharedGrant) bool) {
	t.Helper()
	eventually(t, "the group's grants", func() bool { return cond(s.e.db.SharedGrants(s.group)) })
}

// TestSharedRandom: under random, every member gets a part, and every
// message goes to one member.
func TestSharedRandom(t *testing.T) {
	s := newSharedScript(t, &datadriven.TestData{Cmd: "setup", CmdArgs: []datadriven.CmdArg{{Key: "strategy", Vals: []string{"random"}}}})
	for _, m := range []string{"a", "b", "c"} {
		s.run(t, &datadriven.TestData{Cmd: "member", CmdArgs: []datadriven.CmdArg{{Key: "name", Vals: []string{m}}}})
	}
	out := s.run(t, &datadriven.TestData{Cmd: "publish", CmdArgs: []datadriven.CmdArg{{Key: "n", Vals: []string{"60"}}}})
	got := map[string]int{}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line) // "a <- p:0 (grant 1)"
		got[f[0]]++
		if seen[f[2]] {
			t.Fatalf("%s delivered twice", f[2])
		}
		seen[f[2]] = true
	}
	if len(seen) != 60 || got["a"] == 0 || got["b"] == 0 || got["c"] == 0 {
		t.Fatalf("60 messages over 3 members at random: %v (%d distinct)", got, len(seen))
	}
}

// TestSharedEndedReaderLosesItsTurn: a reader that ended while its own turn
// waited for the group stream's lock (after leave took it out, its turn put
// it back among the waiting readers) is not given the turn: the others
// would yield to it for good, and the stream would stall.
func TestSharedEndedReaderLosesItsTurn(t *testing.T) {
	l := &link{sched: newScheduler(nil)}
	reader := func(id uint64, member string) *linkEntry {
		return &linkEntry{id: id, l: l, read: &readEntry{window: 10, shared: &sharedReader{member: member, strategy: StrategyRoundRobin}}}
	}
	a, b := reader(1, "a"), reader(2, "b")
	ss := &sharedStream{readers: []*linkEntry{b}, waiting: map[*linkEntry]bool{a: true}}
	l.sched.end(a)
	if !ss.turnLocked(b) {
		t.Fatal("b yielded its turn to a reader that ended")
	}
	if ss.waiting[a] {
		t.Fatal("the ended reader still waits for a turn")
	}
}
