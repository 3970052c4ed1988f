package session

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// delivery is the outbound half of a session: subscriptions, the streams
// they read, the batch records that make every send repeatable, the seqno
// tracks and the queue of messages to send (docs/delivery.md). Its parts:
//
//   - subscriptions (subs, states) and the SUBSCRIBE/UNSUBSCRIBE packets
//     being carried out (ops);
//   - per (subscription, stream) a stream with its ring of batch records;
//   - the seqno tracks t1 and t2, which number every QoS 1 and QoS 2
//     delivery and give it its packet id;
//   - the outbox: what is numbered and not yet sent, and the limits on
//     sending;
//   - io: the Watch and Read entries and the calls outstanding with dsd;
//   - the committer, which makes all of it durable (durable sessions).
type delivery struct {
	// durable: the session outlives the connection, so its state is
	// committed to dsd (a zone with durable sessions and an expiry above
	// 0); otherwise it lives and dies here.
	durable bool

	// lastID is the last id given to a subscription, state version or
	// retained batch; missed counts messages lost with dropped generations.
	lastID, missed uint64
	t1, t2         *track

	subs map[string]*sub // by topic filter
	// retired are the unsubscribed subscriptions kept until the messages
	// they sent are acknowledged, by id (deliver_retire.go).
	retired map[uint64]*sub
	// states are the subscription-state versions in use by id;
	// storedStates those dsd has.
	states       map[uint64]*storagev1.SubscriptionState
	storedStates map[uint64]bool
	// retained are the retained batches not yet acknowledged.
	retained map[*retainedBatch]bool
	ops      subOps

	out outbox
	io  dsdIO
	// resume is the replay after a resume, while it lasts.
	resume resumeState

	c committer
	// settling is what the next settleAll visits.
	settling settling
	// overlapWaits are streams whose held batches wait for an older
	// overlapping subscription to send a message first (waitsForOwner).
	overlapWaits []*stream
}

// outbox is what is numbered and waits to be sent, with the limits on
// sending. Invariants: messages leave queue in order, each only once its
// record is durable; at most inflightCap QoS 1/2 PUBLISHes are
// unacknowledged and at most Config.OutboundWindow handed to the driver and
// not yet written (unwritten).
type outbox struct {
	// inflightCap is min(the client's Receive Maximum, Config.InflightLimit,
	// MaxInflight).
	inflightCap int
	// maxPacket is the client's Maximum Packet Size (0: none).
	maxPacket uint32
	// aliases are the connection's outbound Topic Aliases, nil when the
	// client takes none (alias_out.go).
	aliases *outAliases
	// queue holds the messages to send, in order.
	queue []*outMsg
	// unwritten counts PUBLISHes handed to the driver and not yet written.
	unwritten int
	// pubrels are QoS 2 seqnos whose PUBREC arrived, to be answered with
	// PUBREL once rec covering them is durable.
	pubrels []uint64
}

// dsdIO is the session's outstanding work with dsd. Entry ids and call
// seqs are never reused; an entry or call that is not in the maps any more
// is one the machine gave up, and its events are ignored.
type dsdIO struct {
	// watches and reads are the live Watch and Read entries by id.
	watches   map[uint64]*sub
	reads     map[uint64]*stream
	lastEntry uint64
	// calls are the answers awaited, by Seq.
	calls   map[uint64]call
	lastSeq uint64
}

// subOps are the SUBSCRIBE and UNSUBSCRIBE packets in order; the head is
// being carried out (one at a time, so their acks keep packet order).
type subOps struct {
	queue []*subOp
	// pending counts, per filter, the grants of ops not yet carried out
	// that the subscription limit counts (pendGrant).
	pending map[string]int
}

// resumeState is the replay of a resumed session: nothing new is sent
// while replays are unanswered (resuming > 0), then the replayed messages
// go out in numbering order.
type resumeState struct {
	// resuming counts replays still unanswered.
	resuming int
	// replayedRanges are the seqno ranges the replays cover; next the
	// tracks' last assigned seqnos when the session resumed.
	replayedRanges [][4]uint64
	next           [2]uint64
	// resumed: the session was resumed by this connection; dupBefore are
	// the shards' watermarks read after it was opened (nil: unknown). A
	// QoS 1 message stored below its shard's watermark may have been sent
	// by the previous connection before its record was durable
	// (mayPrecedeRecord), so it goes out with DUP.
	resumed   bool
	dupBefore []int64
}

// call is an answer the session awaits from the driver, and what it is
// for.
type call struct {
	kind callKind
	// op: the SUBSCRIBE whose watermarks are awaited (callWatermarks).
	op *subOp
	// st and b: the stream and batch being replayed (callReplay).
	st *stream
	b  *batch
	// s and isNew: the subscription whose retained messages are fetched
	// (callRetained).
	s     *sub
	isNew bool
}

type callKind int

const (
	callWatermarks callKind = iota + 1
	callReplay
	callRetained
)

// answer is an I/O answer to a waited Seq.
type answer struct {
	err    error
	starts []int64
	msgs   []*storagev1.Message
}

// sub is one subscription of the session.
type sub struct {
	rec   *storagev1.Subscription
	state *storagev1.SubscriptionState
	// watch is the subscription's Watch entry (all shards, each from its
	// start), 0 when none.
	watch   uint64
	streams map[StreamID]*stream
	gone    bool
	// aclCheck: a deny rule overlaps the filter, so each message's topic
	// is checked (AccessDeliver) before it is sent.
	aclCheck bool
	// overlaps are the session's other subscriptions whose filters overlap
	// this one's, by subscription id; nil when none (deliver_overlap.go).
	overlaps []overlap
	// retiring: an UNSUBSCRIBE waits for it to finish what it numbered,
	// so it numbers nothing more.
	retiring bool
	// retired: an UNSUBSCRIBE removed it while messages it sent were
	// unacknowledged (deliver_retire.go). It is in delivery.retired, not
	// subs; retiring too.
	retired bool
}

// stream is one (subscription, stream): its batch ring and read position.
type stream struct {
	sub      *sub
	id       StreamID
	position []byte
	ring     []*batch
	eos      bool
	// entry is the live Read entry, 0 when none.
	entry uint64
	// held are batches dsd pushed and not yet numbered: they wait for room
	// in the ring, for the replays, or for the session's commit in flight
	// (so that every commit round numbers what arrived meanwhile as one
	// record; takeHeld).
	held []heldBatch
	// replays are the ring's batches still to be re-read after a resume,
	// in order; the stream reads nothing new until they are queued.
	replays []*batch
	gone    bool
	// done are the last shared grants finished (StreamRing.done_grants).
	done []uint64
	// numberedUs is the timestamp of the last message numbered (sent or
	// skipped; StreamRing.numbered_us).
	numberedUs int64
}

// maxDoneGrants bounds stream.done: enough to cover the acknowledgements
// of one commit round.
const maxDoneGrants = 16

// pushedBatch names one batch a Read entry pushed.
type pushedBatch struct{ entry, seq uint64 }

type heldBatch struct {
	entry, seq uint64
	msgs       []*storagev1.Message
	iterator   []byte
	eos        bool
	// grant is set on a shared group's batch: it is a record of its own.
	grant *Grant
}

// batch is one batch record of a stream's ring.
type batch struct {
	rec *storagev1.BatchRecord
	// pushed are dsd's batches this record holds, to acknowledge to dsd
	// once it is done (a record may merge several pushed batches).
	pushed []pushedBatch
	// durable: the record is committed, so its messages may be sent
	// (QoS 1 ones may go before: mayPrecedeRecord).
	durable bool
	// sealed: a commit carries the record (it snapshots the ring), so it
	// takes no more messages; until then the stream's newest record grows
	// with what dsd pushes (one record per commit round).
	sealed bool
	// queued counts its messages in the send queue.
	queued int
	// covering: the record is in settling.covering of the track (QoS 1,
	// QoS 2). A record the track covered leaves it, and comes back when
	// it grows (growable) by seqnos of that track.
	covering [2]bool
	// overlaps are the subscription's overlaps the record was numbered
	// with (rec.Overlaps holds them for its shard); it grows only while
	// they are the subscription's.
	overlaps []overlap
}

// retainedBatch is the record of retained messages sent on SUBSCRIBE.
type retainedBatch struct {
	sub     *sub
	rec     *storagev1.RetainedBatch
	last    [2]uint64
	durable bool
	queued  int
	gone    bool
}

// outMsg is one message to send.
type outMsg struct {
	msg    *storagev1.Message
	qos    byte
	seqno  uint64
	dup    bool
	retain bool
	subID  uint32
	hasSub bool
	// moreSubIDs are the Subscription Identifiers of the overlapping
	// subscriptions the message is delivered for as well.
	moreSubIDs []uint32
	b          *batch
	rb         *retainedBatch
	st         *stream
}

// subscription returns the subscription o is delivered for.
func (o *outMsg) subscription() *sub {
	if o.st != nil {
		return o.st.sub
	}
	if o.rb != nil {
		return o.rb.sub
	}
	return nil
}

// needsTopicCheck reports whether the messages of a subscription with this
// filter must pass the ACL one by one: only when a deny rule overlaps it,
// so the common case costs nothing per message.
func (m *Machine) needsTopicCheck(filter string) bool {
	return m.authorize != nil && !m.authorize(AccessSubscribeWhole, filter)
}

func (st *stream) key() *storagev1.StreamKey {
	return &storagev1.StreamKey{SubscriptionId: st.sub.rec.Id, Shard: st.id.Shard, Generation: st.id.Generation, StaticIndex: []byte(st.id.StaticIndex)}
}

func (st *stream) ringRecord() *storagev1.StreamRing {
	r := &storagev1.StreamRing{Key: st.key(), EndOfStream: st.eos, Position: st.position, DoneGrants: st.done, NumberedUs: st.numberedUs}
	for _, b := range st.ring {
		r.Batches = append(r.Batches, b.rec)
	}
	return r
}

func (m *Machine) initDelivery(durable bool, clientReceiveMax uint16, maxPacket uint32, clientAliasMax uint16) {
	d := &m.d
	d.durable = durable
	d.out.inflightCap = min(int(clientReceiveMax), max(m.cfg.InflightLimit, 1), MaxInflight)
	d.out.maxPacket = maxPacket
	d.out.aliases = nil
	if n := min(clientAliasMax, m.cfg.MaxTopicAliasOutbound); n > 0 && m.version == packet.V5 {
		d.out.aliases = newOutAliases(n)
	}
	d.t1, d.t2 = newTrack(1), newTrack(2)
	d.subs, d.retired, d.states, d.storedStates = nil, nil, nil, nil
	d.io = dsdIO{}
	d.retained = nil
	d.c.reset()
}

func (m *Machine) newID() uint64 {
	m.d.lastID++
	return m.d.lastID
}

// put sets (*m)[k] = v, making the map on first use: a session's maps stay
// nil until it needs them, so an idle session holds few (fleets of idle
// devices, docs/benchmarks.md).
func put[K comparable, V any](m *map[K]V, k K, v V) {
	if *m == nil {
		*m = make(map[K]V)
	}
	(*m)[k] = v
}

// newEntry returns a new entry id.
func (m *Machine) newEntry() uint64 {
	m.d.io.lastEntry++
	return m.d.io.lastEntry
}

// awaitCall registers c for the answer to a new Seq and returns the Seq.
func (m *Machine) awaitCall(c call) uint64 {
	m.d.io.lastSeq++
	put(&m.d.io.calls, m.d.io.lastSeq, c)
	return m.d.io.lastSeq
}

// answered carries on with the call seq was for, if it is still awaited.
func (m *Machine) answered(seq uint64, a answer) []Action {
	c, ok := m.d.io.calls[seq]
	if !ok || m.state != stateConnected {
		return m.flush()
	}
	delete(m.d.io.calls, seq)
	if len(m.d.io.calls) == 0 {
		m.d.io.calls = nil // an idle session keeps no map
	}
	switch c.kind {
	case callWatermarks:
		m.runSubscribe(c.op, a)
	case callReplay:
		m.replayed(c.st, c.b, a)
	case callRetained:
		m.retainedFetched(c.s, c.isNew, a)
	}
	m.pump()
	m.maybeCommit()
	return m.flush()
}

// Inflight returns the QoS 1 and 2 messages sent and not acknowledged.
func (m *Machine) Inflight() int {
	if m.d.t1 == nil {
		return 0
	}
	return m.d.t1.inflight + m.d.t2.inflight
}

// The machine is deterministic: where it walks a map and the walk makes
// actions, it walks in a fixed order (subscriptions by id, streams by
// (shard, generation, index), retained batches by id, watches by shard).

func (m *Machine) subsInOrder() []*sub {
	return slices.SortedFunc(maps.Values(m.d.subs), func(a, b *sub) int { return cmp.Compare(a.rec.Id, b.rec.Id) })
}

func (s *sub) streamsInOrder() []*stream { return s.streamsWhere(nil) }

// streamsWhere returns the streams keep selects (all when keep is nil), in
// order; selecting first keeps a walk that acts on few streams cheap.
func (s *sub) streamsWhere(keep func(st *stream) bool) []*stream {
	var out []*stream
	for _, st := range s.streams {
		if keep == nil || keep(st) {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, compareStreams)
	return out
}

// compareStreams orders the streams of one subscription.
func compareStreams(a, b *stream) int {
	return cmp.Or(cmp.Compare(a.id.Shard, b.id.Shard), cmp.Compare(a.id.Generation, b.id.Generation),
		strings.Compare(a.id.StaticIndex, b.id.StaticIndex))
}

func (m *Machine) retainedInOrder() []*retainedBatch {
	return slices.SortedFunc(maps.Keys(m.d.retained), func(a, b *retainedBatch) int { return cmp.Compare(a.rec.Key.Id, b.rec.Key.Id) })
}

// Missed returns the messages the session lost (dropped generations).
func (m *Machine) Missed() uint64 { return m.d.missed }
