package session

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"google.golang.org/protobuf/proto"
)

// deliveryScript carries the delivery commands of the scripts:
//
//	watermarks-done seq=N [starts=T,T] [err=unavailable]
//	commit-done [seq=N] [err=stale|unavailable]   (seq: the latest Commit)
//	announce entry=N        (body: "shard generation index" per line)
//	batch entry=N seq=N it=X [eos]   (body: messages, see parseMessages)
//	replayed seq=N [err=gone]        (body: messages)
//	retained-fetched seq=N           (body: messages)
//	puback id=N | pubcomp id=N | pubrec-rc id=N rc=0xNN
//	written n=N | checkpoint | entries-lost
//	final-commit            (FinalCommit, applied to the store model)
//	entry-failed entry=N kind=gone|stale|error
//	state                   (inflight, missed, the stored tracks)
//
// It keeps a model of dsd's session store: a Commit is applied when its
// commit-done succeeds, and "connected present" resumes from it ("new
// keep_store" keeps it across machines, as dsd does across gateways).
type deliveryScript struct {
	store   *memStore
	pending map[uint64]*storagev1.SessionCommit
	last    uint64
	msgN    int
}

func newDeliveryScript() *deliveryScript {
	return &deliveryScript{store: newMemStore(), pending: map[uint64]*storagev1.SessionCommit{}}
}

func (x *deliveryScript) reset(keepStore bool) {
	if !keepStore {
		x.store = newMemStore()
	}
	x.pending = map[uint64]*storagev1.SessionCommit{}
}

func (x *deliveryScript) observe(acts []Action) {
	for _, a := range acts {
		if c, ok := a.(Commit); ok {
			x.pending[c.Seq] = c.Commit
			x.last = c.Seq
		}
	}
}

func (x *deliveryScript) stored(guard uint64) *storagev1.Session { return x.store.session() }

func (x *deliveryScript) run(t *testing.T, d *datadriven.TestData, m *Machine, now time.Time) ([]Action, bool) {
	switch d.Cmd {
	case "watermarks-done":
		var starts []int64
		for _, f := range strings.Split(strArg(d, "starts", "100"), ",") {
			v, _ := strconv.ParseInt(f, 10, 64)
			starts = append(starts, v)
		}
		return m.WatermarksDone(now, uint64(intArg(t, d, "seq", 0)), starts, scriptErr(strArg(d, "err", ""))), true
	case "commit-done":
		seq := uint64(intArg(t, d, "seq", int64(x.last)))
		err := scriptErr(strArg(d, "err", ""))
		var refused []Action
		if c := x.pending[seq]; c != nil && err == nil {
			if err = x.store.apply(c); err != nil {
				// dsd answers INVALID_ARGUMENT: the script shows it.
				refused = []Action{Counted{Event: "store-refused=" + err.Error()}}
			}
		}
		delete(x.pending, seq)
		return append(refused, m.CommitDone(now, seq, err)...), true
	case "announce":
		var streams []AnnouncedStream
		for _, line := range lines(d.Input) {
			f := strings.Fields(line)
			shard, _ := strconv.Atoi(f[0])
			gen, _ := strconv.Atoi(f[1])
			streams = append(streams, AnnouncedStream{
				Stream:   StreamID{Shard: uint32(shard), Generation: uint64(gen), StaticIndex: f[2]},
				Iterator: []byte(fmt.Sprintf("it/%s/%s/%s/start", f[0], f[1], f[2])),
			})
		}
		return m.Announced(now, uint64(intArg(t, d, "entry", 0)), streams), true
	case "batch":
		return m.Batch(now, uint64(intArg(t, d, "entry", 0)), uint64(intArg(t, d, "seq", 0)),
			x.parseMessages(t, d.Input), []byte(strArg(d, "it", "")), d.HasArg("eos")), true
	case "replayed":
		return m.Replayed(now, uint64(intArg(t, d, "seq", 0)), x.parseMessages(t, d.Input), scriptErr(strArg(d, "err", ""))), true
	case "retained-fetched":
		return m.RetainedFetched(now, uint64(intArg(t, d, "seq", 0)), x.parseMessages(t, d.Input), nil), true
	case "puback":
		return m.Packet(now, &packet.Puback{PacketID: uint16(intArg(t, d, "id", 0))}), true
	case "pubcomp":
		return m.Packet(now, &packet.Pubcomp{PacketID: uint16(intArg(t, d, "id", 0))}), true
	case "pubrec-rc":
		return m.Packet(now, &packet.Pubrec{PacketID: uint16(intArg(t, d, "id", 0)), ReasonCode: packet.ReasonCode(intArg(t, d, "rc", 0))}), true
	case "written":
		return m.Written(now, int(intArg(t, d, "n", 1))), true
	case "checkpoint":
		return m.Checkpoint(now), true
	case "final-commit":
		// What the driver does when the connection ended: carry out
		// FinalCommit, if any, before ending the session.
		c := m.FinalCommit()
		if c == nil {
			return []Action{Counted{Event: "final-commit=none"}}, true
		}
		if err := x.store.apply(c); err != nil {
			return []Action{Counted{Event: "store-refused=" + err.Error()}}, true
		}
		return []Action{Counted{Event: "final-commit=" + strings.TrimPrefix(formatCommit(c), "\n  ")}}, true
	case "entries-lost":
		return m.EntriesLost(now), true
	case "entry-failed":
		kinds := map[string]EntryFailure{"gone": EntryGone, "stale": EntryStale, "error": EntryError}
		return m.EntryFailed(now, uint64(intArg(t, d, "entry", 0)), kinds[strArg(d, "kind", "error")], errors.New("entry failed")), true
	case "state":
		return []Action{Counted{Event: fmt.Sprintf("inflight=%d missed=%d queued=%d stored=%s", m.Inflight(), m.Missed(), len(m.d.out.queue), formatTracks(x.store.seqnos)), N: 0}}, true
	}
	return nil, false
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func scriptErr(s string) error {
	switch s {
	case "gone":
		return ErrStreamGone
	case "stale":
		return ErrStaleGuard
	case "unavailable":
		return ErrUnavailable
	}
	return nil
}

// parseMessages reads one message per line: "topic qos [retain]
// [from=CLIENT] [expiry=S] [ts=MICROS] [p=PAYLOAD]"; the payload defaults
// to m1, m2, … in script order.
func (x *deliveryScript) parseMessages(t *testing.T, input string) []*storagev1.Message {
	var msgs []*storagev1.Message
	for _, line := range lines(input) {
		f := strings.Fields(line)
		qos, _ := strconv.Atoi(f[1])
		x.msgN++
		msg := &storagev1.Message{Topic: f[0], Qos: uint32(qos), Payload: []byte(fmt.Sprintf("m%d", x.msgN)),
			TimestampUs: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()}
		for _, o := range f[2:] {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "retain":
				msg.Retain = true
			case "from":
				msg.PublisherClientId = v
			case "p":
				msg.Payload = []byte(v)
			case "ts":
				n, _ := strconv.ParseInt(v, 10, 64)
				msg.TimestampUs = n
			case "expiry":
				n, _ := strconv.ParseUint(v, 10, 32)
				e := uint32(n)
				msg.Properties = &storagev1.MessageProperties{MessageExpiryInterval: &e}
			default:
				t.Fatalf("message option %q", o)
			}
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

func formatDeliveryAction(a Action) (string, bool) {
	switch a := a.(type) {
	case Commit:
		return fmt.Sprintf("commit seq=%d%s", a.Seq, formatCommit(a.Commit)), true
	case Watermarks:
		return fmt.Sprintf("watermarks seq=%d", a.Seq), true
	case AddWatch:
		return fmt.Sprintf("add-watch entry=%d filter=%s starts=%v", a.Entry, a.Filter, a.StartUs), true
	case AddRead:
		return fmt.Sprintf("add-read entry=%d it=%s window=%d", a.Entry, a.Iterator, a.Window), true
	case AckRead:
		return fmt.Sprintf("ack-read entry=%d batch=%d", a.Entry, a.BatchSeq), true
	case RemoveEntry:
		return fmt.Sprintf("remove-entry entry=%d", a.Entry), true
	case Replay:
		return fmt.Sprintf("replay seq=%d it=%s count=%d", a.Seq, a.Iterator, a.Count), true
	case FetchRetained:
		return fmt.Sprintf("fetch-retained seq=%d filter=%s", a.Seq, a.Filter), true
	case Counted:
		if a.N == 0 && strings.Contains(a.Event, "=") {
			return a.Event, true
		}
		return fmt.Sprintf("counted %s %d", a.Event, a.N), true
	}
	return "", false
}

func formatPublish(p *packet.Publish) string {
	s := fmt.Sprintf("PUBLISH %s q%d", p.Topic, p.QoS)
	if p.QoS > 0 {
		s += fmt.Sprintf(" id=%d", p.PacketID)
	}
	if p.Dup {
		s += " dup"
	}
	if p.Retain {
		s += " retain"
	}
	if len(p.Properties.SubscriptionIdentifiers) > 0 {
		s += fmt.Sprintf(" subids=%v", p.Properties.SubscriptionIdentifiers)
	}
	if p.Properties.Present.Has(packet.PropMessageExpiryInterval) {
		s += fmt.Sprintf(" expiry=%d", p.Properties.MessageExpiryInterval)
	}
	if p.Properties.Present.Has(packet.PropTopicAlias) {
		s += fmt.Sprintf(" alias=%d", p.Properties.TopicAlias)
	}
	return s + " " + string(p.Payload)
}

func formatTracks(t *storagev1.SeqnoTracks) string {
	if t == nil {
		return "none"
	}
	return fmt.Sprintf("q1(c=%d d=%d n=%d) q2(c=%d r=%d d=%d n=%d)", t.CommittedQos1, t.DupQos1, t.NextQos1,
		t.CommittedQos2, t.RecQos2, t.DupQos2, t.NextQos2)
}

func formatCommit(c *storagev1.SessionCommit) string {
	var b strings.Builder
	for _, id := range slices.Sorted(slices.Values(c.DeleteSubscriptions)) {
		fmt.Fprintf(&b, "\n  del-sub %d", id)
	}
	subs := slices.Clone(c.PutSubscriptions)
	slices.SortFunc(subs, func(a, b *storagev1.Subscription) int { return int(a.Id) - int(b.Id) })
	for _, s := range subs {
		fmt.Fprintf(&b, "\n  sub %d %s state=%d gens=%v", s.Id, s.TopicFilter, s.CurrentState, formatGens(s.Generations))
		if s.Retired {
			b.WriteString(" retired")
		}
		for _, e := range s.Ended {
			fmt.Fprintf(&b, " ended(sub %d", e.State.GetSubscriptionId())
			for _, se := range e.Ends {
				fmt.Fprintf(&b, " %d/%d/%s<=%d", se.Shard, se.Generation, se.StaticIndex, se.EndUs)
			}
			b.WriteString(")")
		}
	}
	states := slices.Clone(c.PutStates)
	slices.SortFunc(states, func(a, b *storagev1.SubscriptionState) int { return int(a.Id) - int(b.Id) })
	for _, v := range states {
		fmt.Fprintf(&b, "\n  state %d sub=%d q%d", v.Id, v.SubscriptionId, v.Qos)
	}
	rings := slices.Clone(c.PutStreams)
	slices.SortFunc(rings, func(a, b *storagev1.StreamRing) int { return strings.Compare(ringName(a.Key), ringName(b.Key)) })
	for _, r := range rings {
		fmt.Fprintf(&b, "\n  ring %s pos=%s eos=%t", ringName(r.Key), r.Position, r.EndOfStream)
		for _, br := range r.Batches {
			fmt.Fprintf(&b, " [%s..%s n=%d q1=%d-%d q2=%d-%d st=%d", br.ItBegin, br.ItEnd, br.Count,
				br.FirstSeqnoQos1, br.LastSeqnoQos1, br.FirstSeqnoQos2, br.LastSeqnoQos2, br.SubState)
			for _, o := range br.Overlaps {
				fmt.Fprintf(&b, " overlap=st%d", o.State.GetId())
				if o.Ended {
					fmt.Fprintf(&b, "(ended<=%d)", o.EndUs)
				}
			}
			b.WriteString("]")
		}
	}
	for _, k := range c.DeleteStreams {
		fmt.Fprintf(&b, "\n  del-ring %s", ringName(k))
	}
	rets := slices.Clone(c.PutRetained)
	slices.SortFunc(rets, func(a, b *storagev1.RetainedBatch) int { return int(a.Key.Id) - int(b.Key.Id) })
	for _, r := range rets {
		fmt.Fprintf(&b, "\n  retained %d/%d n=%d q1=%d q2=%d", r.Key.SubscriptionId, r.Key.Id, r.Count, r.FirstSeqnoQos1, r.FirstSeqnoQos2)
	}
	for _, k := range c.DeleteRetained {
		fmt.Fprintf(&b, "\n  del-retained %d/%d", k.SubscriptionId, k.Id)
	}
	fmt.Fprintf(&b, "\n  tracks %s last_id=%d", formatTracks(c.Seqnos), c.GetLastId())
	return b.String()
}

func formatGens(g map[uint32]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(g)) {
		parts = append(parts, fmt.Sprintf("%d:%d", k, g[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func ringName(k *storagev1.StreamKey) string {
	return fmt.Sprintf("%d/%d/%d/%s", k.SubscriptionId, k.Shard, k.Generation, k.StaticIndex)
}

// memStore is a model of the session state dsd keeps: commits applied the
// way dsd applies them (deletions first, unused state versions dropped).
type memStore struct {
	subs     map[uint64]*storagev1.Subscription
	states   map[uint64]*storagev1.SubscriptionState
	streams  map[string]*storagev1.StreamRing
	retained map[string]*storagev1.RetainedBatch
	seqnos   *storagev1.SeqnoTracks
	lastID   uint64
	missed   uint64
}

func newMemStore() *memStore {
	return &memStore{subs: map[uint64]*storagev1.Subscription{}, states: map[uint64]*storagev1.SubscriptionState{},
		streams: map[string]*storagev1.StreamRing{}, retained: map[string]*storagev1.RetainedBatch{}}
}

func (s *memStore) apply(c *storagev1.SessionCommit) error {
	// Check first, as dsd does (dsd/storage/session_apply.go), so a refused
	// commit changes nothing: every state version a subscription, a batch
	// or a retained batch refers to must be stored or in the commit, and
	// versions are immutable.
	states := maps.Clone(s.states)
	for _, v := range c.PutStates {
		if old, ok := states[v.Id]; ok && !proto.Equal(old, v) {
			return fmt.Errorf("state version %d is immutable", v.Id)
		}
		states[v.Id] = v
	}
	subs := maps.Clone(s.subs)
	streams := maps.Clone(s.streams)
	retained := maps.Clone(s.retained)
	for _, id := range c.DeleteSubscriptions {
		delete(subs, id)
	}
	for _, k := range c.DeleteStreams {
		delete(streams, ringName(k))
	}
	for _, k := range c.DeleteRetained {
		delete(retained, fmt.Sprintf("%d/%d", k.SubscriptionId, k.Id))
	}
	for _, v := range c.PutSubscriptions {
		subs[v.Id] = cloneSub(v)
	}
	for _, r := range c.PutStreams {
		streams[ringName(r.Key)] = r
	}
	for _, r := range c.PutRetained {
		retained[fmt.Sprintf("%d/%d", r.Key.SubscriptionId, r.Key.Id)] = r
	}
	used := map[uint64]bool{}
	for _, v := range subs {
		if states[v.CurrentState] == nil {
			return fmt.Errorf("subscription %d refers to unknown state version %d", v.Id, v.CurrentState)
		}
		used[v.CurrentState] = true
	}
	for _, r := range streams {
		for _, b := range r.Batches {
			if states[b.SubState] == nil {
				return fmt.Errorf("a batch of ring %s refers to unknown state version %d", ringName(r.Key), b.SubState)
			}
			used[b.SubState] = true
		}
	}
	for _, r := range retained {
		if states[r.SubState] == nil {
			return fmt.Errorf("retained batch %d refers to unknown state version %d", r.Key.Id, r.SubState)
		}
		used[r.SubState] = true
	}
	for id := range states {
		if !used[id] {
			delete(states, id) // versions nothing refers to are deleted
		}
	}
	s.subs, s.states, s.streams, s.retained = subs, states, streams, retained
	if c.Seqnos != nil {
		s.seqnos = c.Seqnos
	}
	if c.LastId != nil {
		s.lastID = *c.LastId
	}
	if c.MissedMessages != nil {
		s.missed = *c.MissedMessages
	}
	return nil
}

func cloneSub(v *storagev1.Subscription) *storagev1.Subscription {
	return proto.CloneOf(v)
}

func (s *memStore) session() *storagev1.Session {
	out := &storagev1.Session{Record: &storagev1.SessionRecord{Seqnos: s.seqnos, LastId: s.lastID, MissedMessages: s.missed}}
	for _, k := range slices.Sorted(maps.Keys(s.subs)) {
		out.Subscriptions = append(out.Subscriptions, cloneSub(s.subs[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(s.states)) {
		out.States = append(out.States, s.states[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.streams)) {
		out.Streams = append(out.Streams, s.streams[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.retained)) {
		out.Retained = append(out.Retained, s.retained[k])
	}
	return out
}
