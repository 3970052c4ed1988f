package session

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// delivery is the outbound half of a session: subscriptions, the streams
// they read, the batch records that make every send repeatable, the seqno
// tracks and the queue of messages to send (docs/delivery.md).
type delivery struct {
	// durable: the session outlives the connection, so its state is
	// committed to dsd (a zone with durable sessions and an expiry above
	// 0); otherwise it lives and dies here.
	durable bool
	// inflightCap is min(the client's Receive Maximum, Config.InflightLimit,
	// MaxInflight): the most QoS 1/2 PUBLISHes unacknowledged at once.
	inflightCap int
	// maxPacket is the client's Maximum Packet Size (0: none).
	maxPacket uint32

	lastID uint64
	missed uint64
	t1, t2 *track

	subs map[string]*sub // by topic filter
	// states are the subscription-state versions in use by id;
	// storedStates those dsd has.
	states       map[uint64]*storagev1.SubscriptionState
	storedStates map[uint64]bool

	// entries maps the machine's entry ids to their watch or stream.
	entries   map[uint64]any
	lastEntry uint64
	// waits are the I/O answers awaited, by Seq.
	waits   map[uint64]func(answer)
	lastSeq uint64

	// queue holds the messages to send, in order.
	queue []*outMsg
	// unwritten counts PUBLISHes handed to the driver and not yet written.
	unwritten int
	// pubrels are QoS 2 seqnos whose PUBREC arrived, to be answered with
	// PUBREL once rec covering them is durable.
	pubrels []uint64
	// retained are the retained batches not yet acknowledged.
	retained map[*retainedBatch]bool

	// ops are the SUBSCRIBE and UNSUBSCRIBE packets in order; the head is
	// being carried out.
	ops []*subOp
	// pending counts, per filter, the grants of ops not yet carried out
	// that the subscription limit counts (pendGrant).
	pending map[string]int
	// resuming counts replays still unanswered after a resume.
	resuming int
	// replayedRanges are the seqno ranges the replays cover; resumeNext
	// the tracks' last assigned seqnos when the session resumed.
	replayedRanges [][4]uint64
	resumeNext     [2]uint64

	c committer
}

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
	// watches are the Watch entry per shard.
	watches map[uint32]uint64
	streams map[StreamID]*stream
	gone    bool
	// aclCheck: a deny rule overlaps the filter, so each message's topic
	// is checked (AccessDeliver) before it is sent.
	aclCheck bool
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
}

// pushedBatch names one batch a Read entry pushed.
type pushedBatch struct{ entry, seq uint64 }

type heldBatch struct {
	entry, seq uint64
	msgs       []*storagev1.Message
	iterator   []byte
	eos        bool
}

// batch is one batch record of a stream's ring.
type batch struct {
	rec *storagev1.BatchRecord
	// pushed are dsd's batches this record holds, to acknowledge to dsd
	// once it is done (a record may merge several pushed batches).
	pushed []pushedBatch
	// durable: the record is committed, so its messages may be sent.
	durable bool
	// queued counts its messages in the send queue.
	queued int
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
	b      *batch
	rb     *retainedBatch
	st     *stream
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
	r := &storagev1.StreamRing{Key: st.key(), EndOfStream: st.eos, Position: st.position}
	for _, b := range st.ring {
		r.Batches = append(r.Batches, b.rec)
	}
	return r
}

func (m *Machine) initDelivery(durable bool, clientReceiveMax uint16, maxPacket uint32) {
	d := &m.d
	d.durable = durable
	d.inflightCap = min(int(clientReceiveMax), max(m.cfg.InflightLimit, 1), MaxInflight)
	d.maxPacket = maxPacket
	d.t1, d.t2 = newTrack(1), newTrack(2)
	d.subs = map[string]*sub{}
	d.states = map[uint64]*storagev1.SubscriptionState{}
	d.storedStates = map[uint64]bool{}
	d.entries = map[uint64]any{}
	d.waits = map[uint64]func(answer){}
	d.retained = map[*retainedBatch]bool{}
	d.c.reset()
}

func (m *Machine) newID() uint64 {
	m.d.lastID++
	return m.d.lastID
}

func (m *Machine) newEntry(owner any) uint64 {
	m.d.lastEntry++
	m.d.entries[m.d.lastEntry] = owner
	return m.d.lastEntry
}

// wait registers f for the answer to a new Seq and returns the Seq.
func (m *Machine) wait(f func(answer)) uint64 {
	m.d.lastSeq++
	m.d.waits[m.d.lastSeq] = f
	return m.d.lastSeq
}

// answered runs the waiter of seq, if any is left.
func (m *Machine) answered(seq uint64, a answer) []Action {
	f, ok := m.d.waits[seq]
	if !ok || m.state != stateConnected {
		return m.flush()
	}
	delete(m.d.waits, seq)
	f(a)
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
