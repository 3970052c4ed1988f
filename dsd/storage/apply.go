package storage

import (
	"fmt"
	"slices"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// command is one entry of a shard's command sequence. Every command carries
// the wall clock reading it is applied with (nowUs), so that replaying the
// same sequence gives the same writes (replication will log commands).
type command interface{ isCommand() }

// cmdBatch stores the messages of one or more Stores.
type cmdBatch struct {
	nowUs  int64
	stores []*storeReq
}

// cmdTick advances the clock of an idle shard so that its last epoch
// becomes readable.
type cmdTick struct{ nowUs int64 }

// cmdAddGeneration ends the current generation and starts a new one with
// the given layout.
type cmdAddGeneration struct {
	nowUs  int64
	layout LayoutConfig
}

// cmdDropGeneration deletes a non-current generation.
type cmdDropGeneration struct {
	nowUs int64
	id    uint64
}

func (cmdBatch) isCommand()          {}
func (cmdTick) isCommand()           {}
func (cmdAddGeneration) isCommand()  {}
func (cmdDropGeneration) isCommand() {}

// storeReq is one Store as it enters a batch (already validated).
type storeReq struct {
	clientID string
	msgs     []IngestMessage
	producer *Producer
}

// storeOutcome is apply's answer to one Store of a batch.
type storeOutcome struct {
	duplicate  bool
	timestamps []int64
	err        error
}

// write is one Pebble operation. A non-nil end makes it a range delete of
// [key, end); a nil value with a nil end is a point delete.
type write struct {
	key, value, end []byte
}

// applyResult is what apply decided: the writes of one Pebble batch, the
// per-Store outcomes, and the command's own result.
type applyResult struct {
	writes   []write
	outcomes []storeOutcome // cmdBatch: one per Store
	gen      *storagev1.Generation
	err      error // the command as a whole was refused (nothing to write)
	// compact is the range to compact after the commit (cmdDropGeneration).
	compact *keyRange
	// messages and bytes count what the batch stored, for stats.
	messages, bytes int
	// streamsChanged: the set of streams may have changed (new trie edges,
	// a generation added or dropped); readers are notified after the commit.
	streamsChanged bool
	// sess is a session command's answer; revoked are the session guards
	// it revoked, announced after the commit.
	sess    sessionOutcome
	revoked []GuardRevoked
	// shared are the shared group members whose connection or membership
	// ended, for their groups after the commit (shared.go).
	shared []SharedDown
	// sharedAcks are the finished grants a session commit carries.
	sharedAcks []sharedAck
	// sharedReturnedTo are the groups a member's end handed grants back
	// to: on a replicated shard every replica wakes its readers of them
	// after the commit (the readers of a group's streams are at the
	// streams' leaders, which may not lead the group's shard).
	sharedReturnedTo []string
	// willsDropped describes wills whose topic the layout refused (logged).
	willsDropped []string
	// tail are the messages written to v2 streams, for the tail cache;
	// droppedGen is the generation this command dropped (0: none).
	tail       []tailWrite
	droppedGen uint64
	// touched are the streams the batch stored messages in (touched.go).
	touched touchSet
}

// apply applies one command to the shard state and returns the writes that
// make it durable. It does no I/O and reads no clock: everything comes from
// st and cmd, so the same sequence of commands from the same state gives the
// same writes.
//
// For speed, apply updates st in place instead of returning a copy. That is
// equivalent to returning st' because the writer treats a failed commit as
// fatal (fail-stop): st is never used again after its writes were lost. A
// command or Store that apply refuses leaves st unchanged.
func apply(st *shardState, cmd command) applyResult {
	switch c := cmd.(type) {
	case cmdBatch:
		return applyBatch(st, c)
	case cmdTick:
		st.lastTs = nextTimestamp(st.lastTs, c.nowUs)
		return applyResult{writes: []write{clockWrite(st)}}
	case cmdAddGeneration:
		return applyAddGeneration(st, c)
	case cmdDropGeneration:
		return applyDropGeneration(st, c)
	case cmdOpenSession, cmdCommitSession, cmdDisconnect, cmdDeleteSession, cmdRelease, cmdSessionGC,
		cmdEndGatewayEpoch, cmdFireWills, cmdWillRetainedDone:
		return applySession(st, c)
	case cmdSharedGrant, cmdSharedAck, cmdSharedMemberDown, cmdSharedForget, cmdSharedStreamGone:
		return applyShared(st, c)
	case cmdRetainedDelete:
		return applyRetainedDelete(st, c)
	case cmdRetainedExpire:
		return applyRetainedExpire(st, c)
	}
	// Invariant: the switch covers every command type the shard writer
	// builds; another type is a bug in this package, never input.
	panic(fmt.Sprintf("storage: unknown command %T", cmd))
}

// nextTimestamp is max(now, last+1): timestamps are strictly increasing
// even when the wall clock goes back.
func nextTimestamp(last, nowUs int64) int64 {
	return max(nowUs, last+1)
}

func clockWrite(st *shardState) write {
	return write{key: shardClockKey(st.shard), value: encodeValue(&storagev1.ShardClock{LastTimestampUs: st.lastTs})}
}

func applyBatch(st *shardState, c cmdBatch) applyResult {
	res := applyResult{outcomes: make([]storeOutcome, len(c.stores))}
	g := st.current()
	touched := make(map[lts.StateID]struct{})
	for i, sr := range c.stores {
		out := &res.outcomes[i]
		var newProducer *storagev1.ProducerState
		// skip marks QoS 2 messages whose packet id is held: not stored.
		var skip []bool
		if sr.producer != nil {
			if err := checkSessionProducer(st, sr); err != nil {
				out.err = err
				continue
			}
			decision, next, err := checkProducer(st.producers[sr.clientID], sr.producer, len(sr.msgs))
			if err != nil {
				out.err = err
				continue
			}
			if decision == producerDuplicate {
				out.duplicate = true
				continue
			}
			newProducer = next
			skip = holdQoS2IDs(newProducer, sr.producer.QoS2PacketIDs)
			if skip != nil && !slices.Contains(skip, false) {
				// Every message is a held QoS 2 id: nothing stored, but the
				// sequence numbers are consumed.
				out.duplicate = true
				st.producers[sr.clientID] = newProducer
				res.writes = append(res.writes, write{key: producerKey(st.shard, sr.clientID), value: encodeValue(newProducer)})
				continue
			}
		}
		// Learn every topic first, so that an lts error refuses the whole
		// Store before anything of it is written.
		learned := make([]lts.Learned, len(sr.msgs))
		var err error
		for j, m := range sr.msgs {
			if skip != nil && skip[j] {
				continue
			}
			if learned[j], err = g.layout.learn(m.Topic); err != nil {
				// The edges learned so far are in the trie: persist them
				// too, so that the trie on disk matches the one in memory.
				for _, l := range learned[:j] {
					res.writes = appendEdges(res.writes, st.shard, g, l.NewEdges)
				}
				break
			}
		}
		if err != nil {
			out.err = fmt.Errorf("storage: store: %w", err)
			continue
		}
		out.timestamps = make([]int64, len(sr.msgs))
		for j, m := range sr.msgs {
			if skip != nil && skip[j] {
				continue // timestamp 0: a held QoS 2 duplicate
			}
			ts := nextTimestamp(st.lastTs, c.nowUs)
			st.lastTs, st.lastDataTs = ts, ts
			out.timestamps[j] = ts
			l := learned[j]
			res.writes = appendEdges(res.writes, st.shard, g, l.NewEdges)
			res.streamsChanged = res.streamsChanged || len(l.NewEdges) > 0
			val := m.storedValue(sr.clientID, ts)
			res.writes = g.layout.appendMessage(res.writes, st.shard, g.meta.Id, l, ts, val)
			res.tailMessage(g, l.Static, ts, val)
			if m.Retain {
				st.putRetainedValue(&res, val)
			}
			g.counts[l.Static]++
			touched[l.Static] = struct{}{}
			res.touch(g, l, ts)
			res.messages++
			res.bytes += len(val)
		}
		if newProducer != nil {
			st.producers[sr.clientID] = newProducer
			res.writes = append(res.writes, write{key: producerKey(st.shard, sr.clientID), value: encodeValue(newProducer)})
		}
	}
	for static := range touched {
		res.writes = append(res.writes, write{
			key:   countKey(st.shard, g.meta.Id, g.layout.staticBytes(static)),
			value: encodeValue(&storagev1.StreamCount{Count: g.counts[static]}),
		})
	}
	res.writes = append(res.writes, clockWrite(st))
	return res
}

// storedMessage is the value stored for m: a copy with the publisher and
// the assigned timestamp filled in.
func storedMessage(m *storagev1.Message, clientID string, ts int64) *storagev1.Message {
	return &storagev1.Message{
		Topic:             m.Topic,
		Payload:           m.Payload,
		Qos:               m.Qos,
		Retain:            m.Retain,
		PublisherClientId: clientID,
		TimestampUs:       ts,
		Properties:        m.Properties,
	}
}

func applyAddGeneration(st *shardState, c cmdAddGeneration) applyResult {
	prev := st.current()
	since := nextTimestamp(st.lastTs, c.nowUs)
	cfg := c.layout.ltsConfig()
	layout, edges, err := prev.layout.successor(c.layout.Type, cfg)
	if err != nil {
		return applyResult{err: fmt.Errorf("storage: add generation: %w", err)}
	}
	st.lastTs = since
	prevMeta := cloneGeneration(prev.meta)
	prevMeta.UntilUs = since
	prev.meta = prevMeta
	g := &storagev1.Generation{Id: prevMeta.Id + 1, SinceUs: since, CreatedAtUs: c.nowUs, Layout: layoutProto(c.layout)}
	st.gens = append(st.gens, &genState{meta: g, layout: layout, counts: make(map[lts.StateID]uint64)})
	res := applyResult{gen: g, streamsChanged: true}
	res.writes = append(res.writes,
		write{key: generationKey(st.shard, prevMeta.Id), value: encodeValue(prevMeta)},
		write{key: generationKey(st.shard, g.Id), value: encodeValue(g)},
	)
	res.writes = appendEdges(res.writes, st.shard, st.current(), edges)
	res.writes = append(res.writes, clockWrite(st))
	return res
}

func applyDropGeneration(st *shardState, c cmdDropGeneration) applyResult {
	cur := st.current().meta.Id
	switch {
	case c.id == cur:
		return applyResult{err: fmt.Errorf("%w: shard %d generation %d", ErrCurrentGeneration, st.shard, c.id)}
	case c.id > cur || c.id == 0:
		return applyResult{err: fmt.Errorf("%w: shard %d generation %d", ErrUnknownGeneration, st.shard, c.id)}
	}
	idx := -1
	for i, g := range st.gens {
		if g.meta.Id == c.id {
			idx = i
		}
	}
	if idx < 0 {
		return applyResult{err: fmt.Errorf("%w: shard %d generation %d was already dropped", ErrGenerationDropped, st.shard, c.id)}
	}
	dropped := st.gens[idx]
	st.gens = append(st.gens[:idx:idx], st.gens[idx+1:]...)
	start, end := genPrefix(st.shard, c.id), genPrefix(st.shard, c.id+1)
	return applyResult{
		gen: dropped.meta,
		writes: []write{
			{key: generationKey(st.shard, c.id)},
			{key: start, end: end},
		},
		compact:        &keyRange{start: start, end: end},
		streamsChanged: true,
		droppedGen:     c.id,
	}
}

// tailMessage notes a message written to generation g for the tail cache
// (v2 streams only: their keys are in time order). The data key is the
// write appendMessage made first for it.
func (res *applyResult) tailMessage(g *genState, static lts.StateID, ts int64, val []byte) {
	if !g.layout.timeFirst() {
		return
	}
	for i := len(res.writes) - 1; i >= 0; i-- {
		if k := res.writes[i].key; len(k) > dataKeyPrefixLen && k[dataKeyPrefixLen-1] == subData {
			res.tail = append(res.tail, tailWrite{gen: g.meta.Id, static: static, ts: ts, key: k[dataKeyPrefixLen:], val: val})
			return
		}
	}
}

func cloneGeneration(g *storagev1.Generation) *storagev1.Generation {
	return &storagev1.Generation{Id: g.Id, SinceUs: g.SinceUs, UntilUs: g.UntilUs, CreatedAtUs: g.CreatedAtUs, Layout: g.Layout}
}

func appendEdges(ws []write, shard int, g *genState, edges []lts.Edge) []write {
	for _, e := range edges {
		k, v := g.layout.edgeRecord(e)
		ws = append(ws, write{key: trieKey(shard, g.meta.Id, k), value: v})
	}
	return ws
}
