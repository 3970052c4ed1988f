package session

import (
	"flag"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// TestDeliveryProperties drives the machine of a durable session with
// random sequences of events against three models: dsd (shards,
// generations, streams, Watch and Read entries, replays, retained messages,
// and the session store of deliver_script_test.go, which applies a commit
// only when it completes and refuses what dsd refuses), the network (the
// client reads a prefix of what was sent; a crash loses the rest), and an
// MQTT 5 client that follows the standard as a receiver (QoS 2 method B:
// an id is held from the PUBLISH until PUBREL, and a PUBLISH with a held id
// is not delivered again). Events: messages published (random topics,
// QoS, retain flags, some by the subscriber itself), batches pushed,
// streams announced, commits completed (a few fail), replays and
// retained fetches answered, packets read by the client, acknowledgements
// sent in random order or withheld, checkpoints, SUBSCRIBE (new or again,
// random retain handling) and UNSUBSCRIBE, new generations, generations
// dropped, entries lost, DISCONNECT and network errors (the driver then
// makes FinalCommit), and crashes: the machine is dropped (a commit in
// flight may or may not have been applied) and a new one resumes from the
// store. Then nothing but progress until all is acknowledged. After each
// packet, and at the end, it checks:
//
//   - a packet id is never used for another message while the client holds
//     it (QoS 2) or has not acknowledged it (QoS 1);
//   - a message is always sent with the QoS and packet id it first had (a
//     replayed batch delivers the same messages with the same ids), again
//     only after a reconnect and then with DUP;
//   - a message reaches the session once, whichever of its overlapping
//     subscriptions match it, carrying their Subscription Identifiers at
//     the highest QoS they grant (MQTT 5 section 3.3.4); QoS 2 messages
//     reach the application exactly once, QoS 0 at most once (a QoS 1
//     message sent before its record was durable may come again after a
//     crash at another QoS: at least once);
//   - new messages reach the application in order per (publisher, topic);
//   - dsd accepts every commit (state versions it refers to exist);
//   - at the end, every QoS 1 and 2 message each remaining subscription
//     matched from its start (but those of dropped generations), and every
//     QoS 1 and 2 message of a retained batch committed for it, reached the
//     application; no id is held, no message is in flight or queued.
//
// It runs seeds 1 to 300 (about 0.6 s; -prop.runs=N for more, 20,000 passed
// while it was written); -prop.seed=N runs one seed with its trace printed.
func TestDeliveryProperties(t *testing.T) {
	if *propSeed != 0 {
		w := newPropWorld(t, *propSeed)
		w.verbose = true
		w.run(propSteps)
		return
	}
	for seed := int64(1); seed <= int64(*propRuns); seed++ {
		w := newPropWorld(t, seed)
		w.run(propSteps)
		if t.Failed() {
			return
		}
	}
}

var (
	propSeed = flag.Int64("prop.seed", 0, "run TestDeliveryProperties with this seed only, printing its trace")
	propRuns = flag.Int("prop.runs", 300, "how many seeds TestDeliveryProperties runs")
)

const propSteps = 400

// propTopics are the topic names published to; each has one publisher,
// whose client id decides the shard. The subscriber publishes too (for
// no local), into shard 0.
// They are 4 bytes long, the shortest that get outbound Topic Aliases.
var propTopics = []string{"a/xx", "a/yy", "b/xx"}

var propPublisherShard = map[string]uint32{"pub-a/xx": 0, "pub-a/yy": 1, "pub-b/xx": 1, "c1": 0}

// propFilters are what the client subscribes to; each has fixed options
// (so a message's QoS is known from its subscription) and its own
// subscription identifier (index + 1), so the client can tell the copies of
// overlapping subscriptions apart.
var propFilters = []struct {
	filter  string
	qos     byte
	noLocal bool
}{{"a/+", 2, false}, {"a/xx", 1, true}, {"#", 2, true}, {"+/xx", 0, false}, {"b/#", 1, false}}

type propWorld struct {
	t       *testing.T
	seed    int64
	rng     *rand.Rand
	verbose bool
	trace   []string
	now     time.Time
	cfg     Config
	recvMax uint16
	// aliasMax is the client's Topic Alias Maximum (0: none).
	aliasMax uint16

	// dsd
	shards   [2]*propShard
	retained map[string]*storagev1.Message
	store    *memStore
	guard    uint64
	msgN     int
	fetchN   int
	// retainedDue are the QoS 1 and 2 retained deliveries of committed
	// retained batches, by subscription id: identity → QoS.
	retainedDue map[uint64]map[string]byte

	m    *Machine
	conn *propConn
	cl   *propClient
	// opened: the session was opened once, so it is present from then on.
	opened bool
	subPID uint16
}

type propShard struct {
	clock   int64
	gen     uint64
	streams []*propStream // in creation order
}

type propStream struct {
	shard uint32
	gen   uint64
	topic string
	msgs  []*storagev1.Message
	// dropped: its generation was dropped (retention).
	dropped bool
}

// propConn is what dsd and the driver hold for one machine.
type propConn struct {
	watches map[uint64]*propWatch
	reads   map[uint64]*propRead
	commit  *Commit
	ios     []propIO
	outq    []packet.Packet
	closed  bool
}

type propWatch struct {
	filter string
	// starts are the start of each shard, by shard.
	starts []int64
	// told counts, per shard, its streams (in creation order) looked at.
	told    []int
	pending []AnnouncedStream
}

type propRead struct {
	st      *propStream
	pos     int
	window  int
	unacked map[uint64]int
	nextSeq uint64
	ended   bool
}

type propIO struct {
	seq    uint64
	kind   string
	it     []byte
	count  uint32
	filter string
}

// propClient is an MQTT 5 client as a receiver.
type propClient struct {
	conn int
	// q1 are the QoS 1 ids received and not acknowledged on this connection.
	q1 map[uint16]string
	// held are the QoS 2 ids held (method B), across connections.
	held map[uint16]string
	acks []packet.Packet
	// app counts deliveries to the application per identity; q1Delivered
	// and q2Delivered are those delivered at QoS 1 and at QoS 2 (exactly
	// once from then on).
	app                      map[string]int
	q1Delivered, q2Delivered map[string]bool
	// q1Acked are the identities the client acknowledged at QoS 1.
	q1Acked map[string]bool
	// lostCommit are the connections that crashed (what they had not
	// committed yet is lost) or had a commit fail.
	lostCommit map[int]bool
	// first is the QoS and id an identity was first sent with; sentOn the
	// connection it was last sent on.
	first  map[string][2]int
	sentOn map[string]int
	// lastNew is, per (publisher, topic), the publish index of
	// the last message delivered to the application for the first time.
	lastNew map[string]int
	// aliases are the outbound Topic Aliases the gateway set on this
	// connection.
	aliases map[uint16]string
}

func newPropWorld(t *testing.T, seed int64) *propWorld {
	rng := rand.New(rand.NewSource(seed))
	cfg := DefaultConfig()
	cfg.NewClientID = func() string { return "auto" }
	cfg.RetainAvailable = true
	cfg.SubscriptionIDAvailable = true
	cfg.BatchSize = 1 + rng.Intn(4)
	cfg.BatchesPerStream = 1 + rng.Intn(4)
	cfg.OutboundWindow = []int{1, 3, 256}[rng.Intn(3)]
	cfg.RecordCommitDelay = []time.Duration{0, 10 * time.Millisecond}[rng.Intn(2)]
	cfg.CheckpointInterval = 5 * time.Second
	w := &propWorld{
		t: t, seed: seed, rng: rng, cfg: cfg,
		recvMax:     []uint16{1, 2, 5, 65535}[rng.Intn(4)],
		now:         time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		retained:    map[string]*storagev1.Message{},
		store:       newMemStore(),
		retainedDue: map[uint64]map[string]byte{},
		cl: &propClient{held: map[uint16]string{}, app: map[string]int{}, first: map[string][2]int{},
			sentOn: map[string]int{}, lastNew: map[string]int{}},
	}
	for i := range w.shards {
		w.shards[i] = &propShard{gen: 1}
	}
	// From the seed, not from rng, so that every seed keeps the scenario
	// it had before aliases were drawn.
	w.aliasMax = []uint16{0, 1, 2, 64}[seed%4]
	w.logf("seed %d: batch=%d ring=%d window=%d receive_max=%d topic_alias_max=%d", seed, cfg.BatchSize, cfg.BatchesPerStream, cfg.OutboundWindow, w.recvMax, w.aliasMax)
	return w
}

func (w *propWorld) logf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if w.verbose {
		w.t.Log(s)
	}
	w.trace = append(w.trace, s)
	if len(w.trace) > 400 {
		w.trace = w.trace[100:]
	}
}

func (w *propWorld) failf(format string, args ...any) {
	w.t.Helper()
	tail := w.trace[max(0, len(w.trace)-120):]
	w.t.Fatalf("seed %d: %s\n(rerun with -prop.seed=%d)\ntrace:\n  %s", w.seed, fmt.Sprintf(format, args...), w.seed, strings.Join(tail, "\n  "))
}

func (w *propWorld) run(steps int) {
	w.connect()
	for i := 0; i < steps; i++ {
		w.step()
	}
	w.quiesce()
	w.checkEnd()
}

// step does one random thing.
func (w *propWorld) step() {
	if w.conn == nil || w.conn.closed {
		w.connect()
		return
	}
	switch r := w.rng.Intn(100); {
	case r < 12:
		w.publish()
	case r < 24:
		w.push(false)
	case r < 29:
		w.announce(false)
	case r < 37:
		w.commitDone(w.rng.Intn(60) == 0)
	case r < 44:
		w.answerIO(false)
	case r < 56:
		w.clientRead(1 + w.rng.Intn(4))
	case r < 70:
		w.clientAck(false)
	case r < 75:
		w.now = w.now.Add(time.Duration(w.rng.Intn(4)) * time.Second)
		w.logf("checkpoint at %s", w.now.Format("15:04:05"))
		w.handle(w.m.Checkpoint(w.now))
	case r < 79:
		w.subscribe()
	case r < 81:
		w.unsubscribe()
	case r < 83:
		sh := w.shards[w.rng.Intn(len(w.shards))]
		sh.gen++
		w.logf("dsd: new generation %d", sh.gen)
	case r < 86:
		w.crash()
	case r < 88:
		w.logf("client: DISCONNECT")
		w.clientRead(w.rng.Intn(len(w.conn.outq) + 1))
		w.handle(w.m.Packet(w.now, &packet.Disconnect{}))
	case r < 89:
		w.logf("network error")
		w.handle(w.m.Lost(w.now, ReasonNetworkError))
	case r < 91:
		w.dropGeneration()
	case r < 92:
		w.logf("entries lost")
		clear(w.conn.watches)
		clear(w.conn.reads)
		w.handle(w.m.EntriesLost(w.now))
	default:
		w.clientRead(len(w.conn.outq))
		w.clientAck(true)
	}
}

// quiesce lets everything finish: no more publishes, crashes or
// subscription changes; the client reads and acknowledges all.
func (w *propWorld) quiesce() {
	w.logf("quiesce")
	for round := 0; round < 2000; round++ {
		if w.conn == nil || w.conn.closed {
			w.connect()
			continue
		}
		busy := w.commitDone(false)
		busy = w.answerIO(true) || busy
		busy = w.announce(true) || busy
		busy = w.push(true) || busy
		if len(w.conn.outq) > 0 {
			w.clientRead(len(w.conn.outq))
			busy = true
		}
		busy = w.clientAck(true) || busy
		if !busy {
			w.now = w.now.Add(5 * time.Second)
			w.handle(w.m.Checkpoint(w.now))
			if w.conn.commit == nil && len(w.conn.outq) == 0 {
				return
			}
		}
	}
	w.failf("no quiescence after 2000 rounds: queued=%d inflight=%d", len(w.m.d.out.queue), w.m.Inflight())
}

// connect starts a new machine over the same dsd and client, resuming the
// session once it was opened.
func (w *propWorld) connect() {
	if w.conn != nil && !w.conn.closed {
		w.failf("connect while connected")
	}
	w.m = New(w.cfg, w.now)
	w.conn = &propConn{watches: map[uint64]*propWatch{}, reads: map[uint64]*propRead{}}
	w.cl.conn++
	clear(w.cl.acks)
	w.cl.acks = nil
	w.cl.q1 = map[uint16]string{}
	c := &packet.Connect{Version: packet.V5, ClientID: "c1"}
	c.Properties.SessionExpiryInterval = 3600
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	if w.recvMax != 65535 {
		c.Properties.ReceiveMaximum = w.recvMax
		c.Properties.Present.Add(packet.PropReceiveMaximum)
	}
	if w.aliasMax > 0 {
		c.Properties.TopicAliasMaximum = w.aliasMax
		c.Properties.Present.Add(packet.PropTopicAliasMaximum)
	}
	w.cl.aliases = nil // the client's table is per connection too
	w.handle(w.m.Packet(w.now, c))
	w.guard++
	r := ConnectResult{Guard: w.guard, SessionPresent: w.opened}
	if w.opened {
		r.Session = proto.CloneOf(w.store.session())
		// dsd's watermarks after the open: every message stored so far is
		// below them.
		for _, sh := range w.shards {
			r.Watermarks = append(r.Watermarks, sh.clock+1)
		}
	}
	w.logf("connect %d (guard %d, present %t)", w.cl.conn, w.guard, w.opened)
	w.opened = true
	w.handle(w.m.ConnectDone(w.now, r))
}

// crash drops the machine: the gateway died. A commit in flight may have
// been applied by dsd; the client got a prefix of what was sent.
func (w *propWorld) crash() {
	applied := w.conn.commit != nil && w.rng.Intn(2) == 0
	w.logf("CRASH (commit in flight applied: %t)", applied)
	if applied {
		w.applyCommit(w.conn.commit.Commit)
	}
	put(&w.cl.lostCommit, w.cl.conn, true)
	w.clientRead(w.rng.Intn(len(w.conn.outq) + 1))
	w.conn.closed = true
	w.conn = nil
}

// closed is the driver's end of a connection the machine closed: it waits
// for the I/O in flight (a commit is carried out; its answer no longer
// matters), then carries out FinalCommit.
func (w *propWorld) closed() {
	w.conn.closed = true
	if c := w.conn.commit; c != nil {
		w.conn.commit = nil
		if w.rng.Intn(5) > 0 {
			w.applyCommit(c.Commit)
			w.handle(w.m.CommitDone(w.now, c.Seq, nil))
		} else {
			put(&w.cl.lostCommit, w.cl.conn, true)
			w.handle(w.m.CommitDone(w.now, c.Seq, ErrUnavailable))
		}
	}
	if cm := w.m.FinalCommit(); cm != nil {
		w.logf("final commit: %s", strings.ReplaceAll(formatCommit(cm), "\n", " |"))
		w.applyCommit(cm)
	}
	w.clientRead(len(w.conn.outq))
}

func (w *propWorld) applyCommit(c *storagev1.SessionCommit) {
	if err := w.store.apply(c); err != nil {
		w.failf("dsd refused a commit: %v\n%s", err, formatCommit(c))
	}
	for _, r := range c.PutRetained {
		msgs, err := decodeRecords(r.Records)
		if err != nil {
			w.failf("retained batch records: %v", err)
		}
		due := w.retainedDue[r.Key.SubscriptionId]
		if due == nil {
			due = map[string]byte{}
			w.retainedDue[r.Key.SubscriptionId] = due
		}
		v := w.store.states[r.SubState]
		for _, msg := range msgs {
			if q := min(byte(msg.Qos), byte(v.Qos)); q > 0 {
				due[identity(msg)] = q
			}
		}
	}
}

// identity names a message the client receives: a session gets one copy of
// a message, whichever of its subscriptions match it; a retained delivery's
// payload names its fetch.
func identity(msg *storagev1.Message) string { return string(msg.Payload) }

// handle carries out the machine's actions.
func (w *propWorld) handle(acts []Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case Send:
			if p, ok := a.Packet.(*packet.Publish); ok {
				w.logf("  -> %s", formatPublish(p))
			} else {
				w.logf("  -> %s", formatPacket(a.Packet, a.Version))
			}
			w.conn.outq = append(w.conn.outq, a.Packet)
		case Commit:
			w.logf("  commit %d:%s", a.Seq, strings.ReplaceAll(formatCommit(a.Commit), "\n", " |"))
			if w.conn.commit != nil {
				w.failf("a second commit while %d is in flight", w.conn.commit.Seq)
			}
			w.conn.commit = &a
		case Watermarks:
			w.conn.ios = append(w.conn.ios, propIO{seq: a.Seq, kind: "watermarks"})
		case Replay:
			w.logf("  replay %d %s count=%d", a.Seq, a.Iterator, a.Count)
			w.conn.ios = append(w.conn.ios, propIO{seq: a.Seq, kind: "replay", it: a.Iterator, count: a.Count})
		case FetchRetained:
			w.conn.ios = append(w.conn.ios, propIO{seq: a.Seq, kind: "retained", filter: a.Filter})
		case AddWatch:
			w.logf("  add-watch %d %s starts=%v", a.Entry, a.Filter, a.StartUs)
			w.conn.watches[a.Entry] = &propWatch{filter: a.Filter, starts: slices.Clone(a.StartUs), told: make([]int, len(a.StartUs))}
		case AddRead:
			st, pos := w.parseIterator(a.Iterator)
			w.logf("  add-read %d %s", a.Entry, a.Iterator)
			w.conn.reads[a.Entry] = &propRead{st: st, pos: pos, window: int(a.Window), unacked: map[uint64]int{}}
		case AckRead:
			if r := w.conn.reads[a.Entry]; r != nil {
				if _, ok := r.unacked[a.BatchSeq]; !ok {
					w.failf("AckRead of batch %d of entry %d, not pushed or acknowledged already", a.BatchSeq, a.Entry)
				}
				delete(r.unacked, a.BatchSeq)
			}
		case RemoveEntry:
			delete(w.conn.watches, a.Entry)
			delete(w.conn.reads, a.Entry)
		case Counted:
			w.logf("  counted %s %d", a.Event, a.N)
		case Close:
			w.logf("  close %s", a.Reason)
			defer w.closed()
		case Connect, EndSession:
		default:
			w.failf("unexpected action %#v", a)
		}
	}
}

// publish appends a message to its stream in the current generation of
// its shard.
func (w *propWorld) publish() {
	topic := propTopics[w.rng.Intn(len(propTopics))]
	from := "pub-" + topic
	if w.rng.Intn(6) == 0 {
		from = "c1"
	}
	sh := w.shards[propPublisherShard[from]]
	sh.clock++
	w.msgN++
	msg := &storagev1.Message{Topic: topic, Payload: []byte("m" + strconv.Itoa(w.msgN)), Qos: uint32(w.rng.Intn(3)),
		Retain: w.rng.Intn(5) == 0, PublisherClientId: from, TimestampUs: sh.clock}
	var st *propStream
	for _, s := range sh.streams {
		if s.gen == sh.gen && s.topic == topic {
			st = s
		}
	}
	if st == nil {
		st = &propStream{shard: propPublisherShard[from], gen: sh.gen, topic: topic}
		sh.streams = append(sh.streams, st)
	}
	st.msgs = append(st.msgs, msg)
	if msg.Retain {
		w.retained[topic] = msg
	}
	w.logf("dsd: %s q%d from %s %s (shard %d gen %d)", topic, msg.Qos, from, msg.Payload, st.shard, st.gen)
}

// dropGeneration drops the oldest generation of a shard that is not the
// current one, as retention does: its Read entries fail (gone), its
// replays too, and it is announced no more.
func (w *propWorld) dropGeneration() {
	sh := w.shards[w.rng.Intn(len(w.shards))]
	var oldest uint64
	for _, st := range sh.streams {
		if !st.dropped && st.gen < sh.gen && (oldest == 0 || st.gen < oldest) {
			oldest = st.gen
		}
	}
	if oldest == 0 {
		return
	}
	w.logf("dsd: generation %d of shard %d dropped", oldest, slices.Index(w.shards[:], sh))
	for _, st := range sh.streams {
		if st.gen == oldest {
			st.dropped = true
		}
	}
	for _, wa := range w.conn.watches {
		wa.pending = slices.DeleteFunc(wa.pending, func(a AnnouncedStream) bool {
			st, _ := w.parseIterator(a.Iterator)
			return st.dropped
		})
	}
	// Its Read entries fail at the next push.
}

func iteratorOf(st *propStream, pos int) []byte {
	return fmt.Appendf(nil, "%d/%d/%s/%d", st.shard, st.gen, st.topic, pos)
}

func (w *propWorld) parseIterator(it []byte) (*propStream, int) {
	f := strings.Split(string(it), "/")
	if len(f) != 5 {
		w.failf("iterator %q", it)
	}
	shard, _ := strconv.Atoi(f[0])
	gen, _ := strconv.ParseUint(f[1], 10, 64)
	topic := f[2] + "/" + f[3]
	pos, _ := strconv.Atoi(f[4])
	for _, st := range w.shards[shard].streams {
		if st.gen == gen && st.topic == topic {
			return st, pos
		}
	}
	w.failf("iterator %q names no stream", it)
	return nil, 0
}

// announce hands the streams a watch has not announced yet to the
// machine: one watch, or (all) every watch.
func (w *propWorld) announce(all bool) bool {
	busy := false
	for _, e := range slices.Sorted(maps.Keys(w.conn.watches)) {
		wa := w.conn.watches[e]
		for shard, start := range wa.starts {
			sh := w.shards[shard]
			for ; wa.told[shard] < len(sh.streams); wa.told[shard]++ {
				st := sh.streams[wa.told[shard]]
				if st.dropped || !topicMatches(wa.filter, st.topic) {
					continue
				}
				pos := 0
				for pos < len(st.msgs) && st.msgs[pos].TimestampUs < start {
					pos++
				}
				wa.pending = append(wa.pending, AnnouncedStream{
					Stream:   StreamID{Shard: st.shard, Generation: st.gen, StaticIndex: st.topic},
					Iterator: iteratorOf(st, pos),
				})
			}
		}
		if len(wa.pending) == 0 || !all && w.rng.Intn(2) == 0 {
			continue
		}
		n := len(wa.pending)
		if !all {
			n = 1 + w.rng.Intn(n)
		}
		list := wa.pending[:n]
		wa.pending = slices.Clone(wa.pending[n:])
		var names []string
		for _, a := range list {
			names = append(names, string(a.Iterator))
		}
		w.logf("dsd: announce on %d: %s", e, strings.Join(names, " "))
		busy = true
		w.handle(w.m.Announced(w.now, e, list))
		if w.conn == nil || w.conn.closed {
			return true
		}
		if !all {
			return true
		}
	}
	return busy
}

// push pushes one batch on a Read entry that can take one (all: on every
// such entry, the largest batch).
func (w *propWorld) push(all bool) bool {
	busy := false
	for _, e := range slices.Sorted(maps.Keys(w.conn.reads)) {
		r := w.conn.reads[e]
		if r != nil && r.st.dropped {
			// A Read entry of a dropped generation fails.
			w.logf("dsd: entry %d gone", e)
			delete(w.conn.reads, e)
			busy = true
			w.handle(w.m.EntryFailed(w.now, e, EntryGone, ErrStreamGone))
			if w.conn == nil || w.conn.closed || !all {
				return true
			}
			continue
		}
		if r == nil || r.ended {
			continue
		}
		held := 0
		for _, n := range r.unacked {
			held += n
		}
		avail := len(r.st.msgs) - r.pos
		old := r.st.gen < w.shards[r.st.shard].gen
		n := min(avail, w.cfg.BatchSize, r.window-held)
		if n <= 0 && !(old && avail == 0) {
			continue
		}
		if !all && w.rng.Intn(3) == 0 {
			continue
		}
		if !all && n > 1 {
			n = 1 + w.rng.Intn(n)
		}
		n = max(n, 0)
		var msgs []*storagev1.Message
		for _, msg := range r.st.msgs[r.pos : r.pos+n] {
			msgs = append(msgs, proto.CloneOf(msg))
		}
		r.pos += n
		eos := old && r.pos == len(r.st.msgs)
		r.nextSeq++
		if n > 0 {
			r.unacked[r.nextSeq] = n
		}
		if eos {
			r.ended = true
		}
		it := iteratorOf(r.st, r.pos)
		w.logf("dsd: push on %d batch %d: %d messages to %s eos=%t", e, r.nextSeq, n, it, eos)
		busy = true
		w.handle(w.m.Batch(w.now, e, r.nextSeq, msgs, it, eos))
		if w.conn == nil || w.conn.closed || !all {
			return true
		}
	}
	return busy
}

// commitDone completes the commit in flight (fail: dsd fails it).
func (w *propWorld) commitDone(fail bool) bool {
	c := w.conn.commit
	if c == nil {
		return false
	}
	w.conn.commit = nil
	if fail {
		w.logf("dsd: commit %d fails", c.Seq)
		put(&w.cl.lostCommit, w.cl.conn, true)
		w.handle(w.m.CommitDone(w.now, c.Seq, ErrUnavailable))
		return true
	}
	w.logf("dsd: commit %d done", c.Seq)
	w.applyCommit(c.Commit)
	w.handle(w.m.CommitDone(w.now, c.Seq, nil))
	return true
}

// answerIO answers one pending call (all: every one).
func (w *propWorld) answerIO(all bool) bool {
	busy := false
	for len(w.conn.ios) > 0 {
		i := 0
		if !all {
			i = w.rng.Intn(len(w.conn.ios))
		}
		io := w.conn.ios[i]
		w.conn.ios = slices.Delete(w.conn.ios, i, i+1)
		busy = true
		switch io.kind {
		case "watermarks":
			starts := make([]int64, len(w.shards))
			for i, sh := range w.shards {
				starts[i] = sh.clock + 1
			}
			w.logf("dsd: watermarks %d: %v", io.seq, starts)
			w.handle(w.m.WatermarksDone(w.now, io.seq, starts, nil))
		case "replay":
			st, pos := w.parseIterator(io.it)
			if st.dropped {
				w.logf("dsd: replay %d: gone", io.seq)
				w.handle(w.m.Replayed(w.now, io.seq, nil, ErrStreamGone))
				break
			}
			if pos+int(io.count) > len(st.msgs) {
				w.failf("replay of %d messages from %s: the stream has %d", io.count, io.it, len(st.msgs))
			}
			var msgs []*storagev1.Message
			for _, msg := range st.msgs[pos : pos+int(io.count)] {
				msgs = append(msgs, proto.CloneOf(msg))
			}
			w.logf("dsd: replayed %d", io.seq)
			w.handle(w.m.Replayed(w.now, io.seq, msgs, nil))
		case "retained":
			w.fetchN++
			var msgs []*storagev1.Message
			for _, topic := range slices.Sorted(maps.Keys(w.retained)) {
				if topicMatches(io.filter, topic) {
					msg := proto.CloneOf(w.retained[topic])
					// Each fetch is its own copy for the client's bookkeeping.
					msg.Payload = fmt.Appendf(nil, "R%d:%s", w.fetchN, msg.Payload)
					msgs = append(msgs, msg)
				}
			}
			w.logf("dsd: retained %d for %s: %d messages", io.seq, io.filter, len(msgs))
			w.handle(w.m.RetainedFetched(w.now, io.seq, msgs, nil))
		}
		if !all || w.conn == nil || w.conn.closed {
			return true
		}
	}
	return busy
}

func (w *propWorld) subscribe() {
	i := w.rng.Intn(len(propFilters))
	f := propFilters[i]
	w.subPID++
	p := &packet.Subscribe{PacketID: w.subPID, Subscriptions: []packet.Subscription{{
		Filter: f.filter, QoS: f.qos, NoLocal: f.noLocal,
		RetainAsPublished: w.rng.Intn(2) == 0, RetainHandling: byte(w.rng.Intn(3)),
	}}}
	p.Properties.SubscriptionIdentifiers = []uint32{uint32(i + 1)}
	w.logf("client: SUBSCRIBE %s q%d rh=%d", f.filter, f.qos, p.Subscriptions[0].RetainHandling)
	w.handle(w.m.Packet(w.now, p))
}

func (w *propWorld) unsubscribe() {
	f := propFilters[w.rng.Intn(len(propFilters))]
	w.subPID++
	w.logf("client: UNSUBSCRIBE %s", f.filter)
	w.handle(w.m.Packet(w.now, &packet.Unsubscribe{PacketID: w.subPID, Filters: []string{f.filter}}))
}

// clientRead has the client read n packets.
func (w *propWorld) clientRead(n int) {
	if w.conn == nil {
		return
	}
	n = min(n, len(w.conn.outq))
	pkts := w.conn.outq[:n]
	w.conn.outq = slices.Clone(w.conn.outq[n:])
	pubs := 0
	for _, p := range pkts {
		switch p := p.(type) {
		case *packet.Publish:
			pubs++
			w.receive(p)
		case *packet.Pubrel:
			w.receivePubrel(p)
		}
	}
	if pubs > 0 && !w.conn.closed {
		w.handle(w.m.Written(w.now, pubs))
	}
}

func (w *propWorld) receive(p *packet.Publish) {
	cl := w.cl
	topic := w.resolveAlias(p)
	subIDs := p.Properties.SubscriptionIdentifiers
	if len(subIDs) == 0 || p.Payload[0] != 'm' && len(subIDs) != 1 {
		w.failf("PUBLISH %s with subscription identifiers %v", p.Payload, subIDs)
	}
	id := string(p.Payload)
	if p.Payload[0] == 'm' {
		w.checkMerged(p, topic)
	}
	if f, ok := cl.first[id]; ok {
		switch {
		case f == [2]int{int(p.QoS), int(p.PacketID)}:
		case f[0] == 1 && (p.Dup || p.QoS == 0) && cl.sentOn[id] != cl.conn:
			// A QoS 1 message sent before its record was durable, read
			// again after a crash: a new packet id, with DUP
			// (mayPrecedeRecord), numbered anew with the overlapping
			// subscriptions of now (one whose SUBSCRIBE was lost in the
			// crash raised its QoS before: now maybe QoS 0, which has no
			// DUP). At least once allows the repeat. Its resends from now
			// on keep the new id.
			cl.first[id] = [2]int{int(p.QoS), int(p.PacketID)}
		default:
			w.failf("%s sent as q%d id %d, first as q%d id %d", id, p.QoS, p.PacketID, f[0], f[1])
		}
		if cl.sentOn[id] == cl.conn {
			w.failf("%s sent twice on one connection [MQTT-4.4.0-1]", id)
		}
		if p.QoS > 0 && !p.Dup {
			w.failf("%s sent again without DUP [MQTT-3.3.1-1]", id)
		}
	} else {
		cl.first[id] = [2]int{int(p.QoS), int(p.PacketID)}
	}
	cl.sentOn[id] = cl.conn
	deliver := true
	switch p.QoS {
	case 1:
		if other, ok := cl.q1[p.PacketID]; ok && other != id {
			w.failf("QoS 1 id %d used for %s while %s is not acknowledged", p.PacketID, id, other)
		}
		cl.q1[p.PacketID] = id
		cl.acks = append(cl.acks, &packet.Puback{PacketID: p.PacketID})
	case 2:
		if other, ok := cl.held[p.PacketID]; ok {
			if other != id {
				w.failf("QoS 2 id %d used for %s while the client holds it for %s", p.PacketID, id, other)
			}
			deliver = false
		}
		cl.held[p.PacketID] = id
		cl.acks = append(cl.acks, &packet.Pubrec{PacketID: p.PacketID})
	}
	if !deliver {
		return
	}
	cl.app[id]++
	// QoS 2 is exactly once; QoS 0 at most once, unless a delivery at
	// QoS 1 came first (at least once: see the repeat above).
	if cl.app[id] > 1 && (p.QoS == 2 && cl.q2Delivered[id] || p.QoS == 0 && !cl.q1Delivered[id]) {
		w.failf("%s (q%d) delivered to the application %d times", id, p.QoS, cl.app[id])
	}
	switch p.QoS {
	case 1:
		put(&cl.q1Delivered, id, true)
	case 2:
		put(&cl.q2Delivered, id, true)
	}
	if cl.app[id] == 1 && p.Payload[0] == 'm' {
		n, _ := strconv.Atoi(string(p.Payload[1:]))
		msg := w.published(n)
		if topic != msg.Topic {
			w.failf("m%d came on %q, published to %q", n, topic, msg.Topic)
		}
		key := msg.PublisherClientId + "|" + topic
		if n < cl.lastNew[key] {
			w.failf("%s delivered after m%d (order of %s)", id, cl.lastNew[key], key)
		}
		cl.lastNew[key] = n
	}
}

// checkMerged checks a message's one copy for the session's overlapping
// subscriptions: each subscription identifier is of a filter that matches
// the topic (and does not exclude the subscriber's own message), each only
// once, and the QoS is the highest they grant.
func (w *propWorld) checkMerged(p *packet.Publish, topic string) {
	n, _ := strconv.Atoi(string(p.Payload[1:]))
	msg := w.published(n)
	var qos byte
	seen := map[uint32]bool{}
	for _, sid := range p.Properties.SubscriptionIdentifiers {
		if sid == 0 || int(sid) > len(propFilters) || seen[sid] {
			w.failf("PUBLISH %s with subscription identifiers %v", p.Payload, p.Properties.SubscriptionIdentifiers)
			return
		}
		seen[sid] = true
		f := propFilters[sid-1]
		if !topicMatches(f.filter, topic) || f.noLocal && msg.PublisherClientId == "c1" {
			w.failf("PUBLISH %s on %s for subscription %d (%s, no local %v)", p.Payload, topic, sid, f.filter, f.noLocal)
		}
		qos = max(qos, min(byte(msg.Qos), f.qos))
	}
	if p.QoS != qos && !p.Dup {
		w.failf("PUBLISH %s at q%d for subscriptions %v, want q%d", p.Payload, p.QoS, p.Properties.SubscriptionIdentifiers, qos)
	}
}

// resolveAlias returns the topic of p, resolving its outbound Topic Alias
// as the client does, and checks the alias against the client's maximum
// [MQTT-3.3.2-9] and its table [MQTT-3.3.2-7].
func (w *propWorld) resolveAlias(p *packet.Publish) string {
	if !p.Properties.Present.Has(packet.PropTopicAlias) {
		if p.Topic == "" {
			w.failf("PUBLISH %s without topic or alias", p.Payload)
		}
		return p.Topic
	}
	a := p.Properties.TopicAlias
	if a == 0 || a > w.aliasMax {
		w.failf("PUBLISH %s with alias %d, the client's maximum is %d", p.Payload, a, w.aliasMax)
	}
	if p.Topic != "" {
		put(&w.cl.aliases, a, p.Topic)
		return p.Topic
	}
	topic, ok := w.cl.aliases[a]
	if !ok {
		w.failf("PUBLISH %s with alias %d, never set on this connection", p.Payload, a)
	}
	return topic
}

// published finds message mN.
func (w *propWorld) published(n int) *storagev1.Message {
	payload := "m" + strconv.Itoa(n)
	for _, sh := range w.shards {
		for _, st := range sh.streams {
			for _, msg := range st.msgs {
				if string(msg.Payload) == payload {
					return msg
				}
			}
		}
	}
	w.failf("no message %s", payload)
	return nil
}

func (w *propWorld) receivePubrel(p *packet.Pubrel) {
	code := packet.Success
	if _, ok := w.cl.held[p.PacketID]; ok {
		delete(w.cl.held, p.PacketID)
	} else {
		code = packet.PacketIdentifierNotFound
	}
	w.cl.acks = append(w.cl.acks, &packet.Pubcomp{PacketID: p.PacketID, ReasonCode: code})
}

// clientAck sends one pending acknowledgement, usually the oldest, now and
// then another (all: every one, in order).
func (w *propWorld) clientAck(all bool) bool {
	busy := false
	for len(w.cl.acks) > 0 && w.conn != nil && !w.conn.closed {
		i := 0
		if !all && w.rng.Intn(3) == 0 {
			i = w.rng.Intn(len(w.cl.acks))
		}
		p := w.cl.acks[i]
		w.cl.acks = slices.Delete(w.cl.acks, i, i+1)
		if a, ok := p.(*packet.Puback); ok {
			put(&w.cl.q1Acked, w.cl.q1[a.PacketID], true)
			delete(w.cl.q1, a.PacketID)
		}
		w.logf("client: %s", formatPacket(p, packet.V5))
		busy = true
		w.handle(w.m.Packet(w.now, p))
		if !all {
			break
		}
	}
	return busy
}

// checkEnd checks what must hold once everything is acknowledged.
func (w *propWorld) checkEnd() {
	m := w.m
	if len(w.cl.held) > 0 {
		w.failf("the client still holds QoS 2 ids %v", w.cl.held)
	}
	// Every message last sent at QoS 1 was acknowledged: one whose PUBACK
	// a connection's end lost is sent again when the session resumes
	// [MQTT-4.4.0-1], also when its subscription was removed since
	// [MQTT-3.10.4-3].
	// Exempt: a message whose generation retention dropped (it is counted
	// missed), and one sent on a connection that crashed or had a commit
	// fail: it may have been sent before its record was durable
	// (mayPrecedeRecord), so only a new read of its stream sends it again,
	// which an UNSUBSCRIBE before that read forestalls (docs/delivery.md,
	// "Limits").
	dropped := map[string]bool{}
	for _, sh := range w.shards {
		for _, st := range sh.streams {
			for _, msg := range st.msgs {
				if st.dropped {
					dropped[identity(msg)] = true
				}
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(w.cl.first)) {
		if w.cl.first[id][0] == 1 && !w.cl.q1Acked[id] && !dropped[id] && !w.cl.lostCommit[w.cl.sentOn[id]] {
			w.failf("%s was sent at QoS 1 and never sent again after its PUBACK was lost", id)
		}
	}
	if m.Inflight() != 0 || len(m.d.out.queue) != 0 {
		w.failf("at the end: inflight %d, queued %d, resuming %d, pubrels %v, tracks %s, held by the client %v",
			m.Inflight(), len(m.d.out.queue), m.d.resume.resuming, m.d.out.pubrels, formatTracks(seqnoTracks(m.d.t1, m.d.t2)), w.cl.held)
	}
	for _, s := range m.subsInOrder() {
		subID := *s.state.SubscriptionIdentifier
		f := propFilters[subID-1]
		for shard, sh := range w.shards {
			for _, st := range sh.streams {
				if st.dropped || !topicMatches(f.filter, st.topic) {
					continue
				}
				for _, msg := range st.msgs {
					if msg.TimestampUs < s.rec.StartUs[shard] || f.noLocal && msg.PublisherClientId == "c1" {
						continue
					}
					if q := min(byte(msg.Qos), f.qos); q > 0 && w.cl.app[identity(msg)] == 0 {
						w.failf("%s (q%d, %s shard %d gen %d, subscription %d) never reached the application", identity(msg), q, st.topic, shard, st.gen, subID)
					}
				}
			}
		}
		for id, q := range w.retainedDue[s.rec.Id] {
			if w.cl.app[id] == 0 {
				w.failf("retained %s (q%d) of a committed retained batch never reached the application", id, q)
			}
		}
	}
}

// topicMatches reports whether topic name t matches filter f.
func topicMatches(f, t string) bool {
	fl, tl := strings.Split(f, "/"), strings.Split(t, "/")
	for i, l := range fl {
		if l == "#" {
			return true
		}
		if i >= len(tl) || l != "+" && l != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}

func TestTopicMatches(t *testing.T) {
	for _, c := range []struct {
		f, t string
		ok   bool
	}{{"#", "a/x", true}, {"a/+", "a/x", true}, {"a/+", "a/x/y", false}, {"+/x", "b/x", true}, {"b/#", "b/x", true}, {"b/#", "a/x", false}, {"a/x", "a/y", false}} {
		if got := topicMatches(c.f, c.t); got != c.ok {
			t.Errorf("topicMatches(%q, %q) = %t", c.f, c.t, got)
		}
	}
}
