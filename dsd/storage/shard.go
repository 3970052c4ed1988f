package storage

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/lts"
)

// shard is one shard of the DB: its state and its writer (commits go
// through the DB's committer).
//
// Ownership: the writer goroutine is the only mutator of mu.st, and mutates
// it only while holding mu (apply is CPU-only, so no I/O happens under mu).
// Readers (GetStreams, MakeIterator, Next, the getters) hold mu.RLock while
// they look at the state, never while they do Pebble I/O.
type shard struct {
	db *DB
	id int

	// reqCh carries Stores and admin commands to the writer. Unbuffered: a
	// successful send means the writer owns the request and will answer it.
	reqCh chan *request
	// doneCh tells the writer that the committer finished one of its
	// commands.
	doneCh chan struct{}

	// assigned is the last timestamp the writer assigned (maybe uncommitted).
	assigned atomic.Int64
	// readable is the readable clock R: every timestamp <= R is committed.
	readable atomic.Int64

	stats shardStats

	// repl is the shard's replication state (replication.go).
	repl shardRepl

	// tickSuspended is owned by the writer: ticks are suspended while the
	// wall clock is far behind the shard clock.
	tickSuspended bool

	mu struct {
		sync.RWMutex
		st *shardState
	}
}

// shardState is everything apply needs: the shard's deterministic state.
type shardState struct {
	shard int
	// lastTs is the last assigned timestamp (the persisted clock).
	lastTs int64
	// lastDataTs is the timestamp of the last stored message (not
	// persisted: at open it is lastTs, which costs at most one extra tick).
	lastDataTs int64
	// gens are the live generations, ascending by id; the last is current.
	gens      []*genState
	producers map[string]*storagev1.ProducerState
	// sessions are the shard's sessions by client id (session.go).
	sessions map[string]*sessionState
	// guardCounter is the last session guard handed out (persisted).
	guardCounter uint64
	// wills indexes the armed will timers by due time (will.go).
	wills willIndex
	// retained indexes the expiring retained records (retained_apply.go).
	retained retainedTimers
	// groups are the shard's shared subscription groups by filter
	// (shared.go); nil until the first.
	groups map[string]*sharedGroup
}

// genState is one generation: its record, its layout and its counters.
type genState struct {
	meta   *storagev1.Generation
	layout *wildcardLayout
	// counts is the number of messages per stream (static index).
	counts map[lts.StateID]uint64
}

func (st *shardState) current() *genState { return st.gens[len(st.gens)-1] }

// gen returns the live generation id, or nil.
func (st *shardState) gen(id uint64) *genState {
	for _, g := range st.gens {
		if g.meta.Id == id {
			return g
		}
	}
	return nil
}

// writeInitialShard writes the records of a new shard: clock 0 and
// generation 1 (since 0) with the given layout.
func writeInitialShard(b *pebble.Batch, shard int, layout LayoutConfig, nowUs int64) {
	_ = b.Set(shardClockKey(shard), encodeValue(&storagev1.ShardClock{LastTimestampUs: 0}), nil)
	g := &storagev1.Generation{Id: 1, SinceUs: 0, CreatedAtUs: nowUs, Layout: layoutProto(layout)}
	_ = b.Set(generationKey(shard, 1), encodeValue(g), nil)
}

// loadShard rebuilds a shard from Pebble.
func loadShard(db *DB, id int) (*shard, error) {
	st, err := loadShardState(db, id)
	if err != nil {
		return nil, err
	}
	s := &shard{
		db:     db,
		id:     id,
		reqCh:  make(chan *request),
		doneCh: make(chan struct{}, db.opts.MaxInflightCommits),
	}
	s.mu.st = st
	s.repl.wake = make(chan struct{}, 1)
	s.assigned.Store(st.lastTs)
	s.readable.Store(st.lastTs)
	return s, nil
}

// loadShardState reads a shard's state from Pebble (at open, and after a
// snapshot's install).
func loadShardState(db *DB, id int) (*shardState, error) {
	st := &shardState{shard: id, producers: make(map[string]*storagev1.ProducerState), sessions: make(map[string]*sessionState)}
	var clock storagev1.ShardClock
	found, err := db.getValue(shardClockKey(id), &clock)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: shard %d has no clock record", ErrCorruption, id)
	}
	st.lastTs = clock.LastTimestampUs
	st.lastDataTs = st.lastTs

	err = db.scan(shardPrefix(id, tagGeneration), func(k, v []byte) error {
		g := &storagev1.Generation{}
		if err := decodeValue(k, v, g); err != nil {
			return err
		}
		if len(k) != 11 || binary.BigEndian.Uint64(k[3:]) != g.Id {
			return fmt.Errorf("%w: key %s holds generation %d", ErrCorruption, prettyKey(k), g.Id)
		}
		gs, err := loadGeneration(db, id, g)
		if err != nil {
			return err
		}
		st.gens = append(st.gens, gs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(st.gens) == 0 {
		return nil, fmt.Errorf("%w: shard %d has no generation", ErrCorruption, id)
	}
	for i, g := range st.gens {
		last := i == len(st.gens)-1
		if (g.meta.UntilUs == 0) != last {
			return nil, fmt.Errorf("%w: shard %d generation %d: until %d (current: %v)", ErrCorruption, id, g.meta.Id, g.meta.UntilUs, last)
		}
	}

	err = db.scan(shardPrefix(id, tagProducer), func(k, v []byte) error {
		p := &storagev1.ProducerState{}
		if err := decodeValue(k, v, p); err != nil {
			return err
		}
		st.producers[string(k[3:])] = p
		return nil
	})
	if err != nil {
		return nil, err
	}

	// The retained records before the sessions: loading the wills may
	// write the retained wills an earlier version left pending.
	if err := loadRetained(db, st); err != nil {
		return nil, err
	}
	if err := loadSessions(db, st); err != nil {
		return nil, err
	}
	if err := loadShared(db, st); err != nil {
		return nil, err
	}
	return st, nil
}

// loadGeneration rebuilds a generation's trie and counters.
func loadGeneration(db *DB, shard int, g *storagev1.Generation) (*genState, error) {
	typ, cfg, err := layoutFromProto(g.Layout)
	if err != nil {
		return nil, fmt.Errorf("%w: shard %d generation %d: %w", ErrCorruption, shard, g.Id, err)
	}
	var recs []edgeRecord
	err = db.scan(genSubPrefix(shard, g.Id, subTrie), func(k, v []byte) error {
		recs = append(recs, edgeRecord{key: append([]byte(nil), k[dataKeyPrefixLen:]...), value: append([]byte(nil), v...)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	layout, err := restoreLayout(typ, cfg, recs)
	if err != nil {
		return nil, fmt.Errorf("%w: shard %d generation %d trie: %w", ErrCorruption, shard, g.Id, err)
	}
	gs := &genState{meta: g, layout: layout, counts: make(map[lts.StateID]uint64)}
	prefix := genSubPrefix(shard, g.Id, subCount)
	err = db.scan(prefix, func(k, v []byte) error {
		var c storagev1.StreamCount
		if err := decodeValue(k, v, &c); err != nil {
			return err
		}
		static, err := layout.parseStatic(k[len(prefix):])
		if err != nil {
			return fmt.Errorf("%w: key %s: %w", ErrCorruption, prettyKey(k), err)
		}
		gs.counts[static] = c.Count
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gs, nil
}

// scan calls fn for every key with the prefix, in order. k and v are only
// valid during the call.
func (db *DB) scan(prefix []byte, fn func(k, v []byte) error) error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return wrapPebble("scan "+prettyKey(prefix), err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return wrapPebble("scan "+prettyKey(it.Key()), err)
		}
		if err := fn(it.Key(), v); err != nil {
			_ = it.Close()
			return err
		}
	}
	return wrapPebble("scan "+prettyKey(prefix), it.Close())
}

func layoutProto(l LayoutConfig) *storagev1.Layout {
	th := make([]uint32, len(l.WildcardThresholds))
	for i, t := range l.WildcardThresholds {
		th[i] = uint32(t)
	}
	epochBits := uint32(l.EpochBits)
	if l.Type == layoutWildcardOptimizedV2 {
		epochBits = 0 // unused: recorded as 0 so that nobody reads meaning into it
	}
	return &storagev1.Layout{
		Type:               l.Type,
		BitsPerTopicLevel:  uint32(l.BitsPerTopicLevel),
		EpochBits:          epochBits,
		TopicIndexBytes:    uint32(l.TopicIndexBytes),
		WildcardThresholds: th,
		MaxTrieStates:      uint32(l.MaxTrieStates),
	}
}

// layoutFromProto returns the type and lts config of a generation's frozen
// layout.
func layoutFromProto(p *storagev1.Layout) (string, lts.Config, error) {
	if p == nil {
		return "", lts.Config{}, fmt.Errorf("generation has no layout")
	}
	if p.Type != layoutWildcardOptimized && p.Type != layoutWildcardOptimizedV2 {
		return "", lts.Config{}, fmt.Errorf("unknown layout type %q", p.Type)
	}
	th := make([]int, len(p.WildcardThresholds))
	for i, t := range p.WildcardThresholds {
		th[i] = int(t)
	}
	cfg := lts.Config{
		BitsPerTopicLevel:  int(p.BitsPerTopicLevel),
		EpochBits:          int(p.EpochBits),
		TopicIndexBytes:    int(p.TopicIndexBytes),
		WildcardThresholds: th,
		MaxTrieStates:      int(p.MaxTrieStates),
	}
	return p.Type, cfg, cfg.Validate()
}
