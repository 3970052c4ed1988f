package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Shared subscription groups ($share/{group}/{filter}).
//
// A group's progress lives in the group's shard (ShardOf of its whole
// filter), like a session's. For each stream the group has a cursor: where
// its next new grant starts. A grant is one batch of a stream handed to one
// member (a session), recorded durably before its messages are pushed, so
// every message after the cursor is granted once. A grant ends when its
// member acknowledges it (SharedAck). When the member's connection ends,
// its grants go back to the group (member "") to be handed to the next
// member that reads, with QoS 1 as a redelivery (DUP); only a grant holding
// a QoS 2 delivery that the member recorded stays with it (MQTT 5 section
// 4.8.2: the delivery completes when it reconnects), and is dropped if the
// session ends first. Which member reads next is the link's business
// (dsd/server): the storage only records what was decided.
//
// The member side of a connection's end is computed in the member's shard
// (sharedDown, in applyResult) and carried to the groups' shards after the
// commit: the two are different shards, so this is not atomic. A crash in
// between leaves grants with a member whose connection ended; Open
// reconciles them (reconcileShared).

// sharedPrefix is the shared-filter prefix [MQTT-4.8.2].
const sharedPrefix = "$share/"

// Sub-keyspaces of a group (after S|0B|len(filter)|filter).
const (
	subSharedRecord byte = 0x00 // -> SharedGroupRecord
	subSharedStream byte = 0x01 // | shard (2) | gen (8) | static -> SharedGroupStream
	subSharedGrant  byte = 0x02 // | grant id (8) -> SharedGrant
	subSharedEnded  byte = 0x03 // | member -> SharedMemberEnd
)

// maxSharedEnds bounds the member ends a group keeps (SharedMemberEnd):
// an end only has to outlive the turns in flight when it was applied
// (milliseconds), so the oldest go first.
const maxSharedEnds = 1024

func sharedGroupPrefix(shard int, filter string) []byte {
	k := binary.BigEndian.AppendUint16(shardPrefix(shard, tagSharedGroup), uint16(len(filter)))
	return append(k, filter...)
}

func sharedKey(shard int, filter string, sub byte, suffix []byte) []byte {
	return append(append(sharedGroupPrefix(shard, filter), sub), suffix...)
}

// sharedStreamSuffix is shard (2) | gen (8) | static.
func sharedStreamSuffix(s Stream) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(s.Shard))
	b = binary.BigEndian.AppendUint64(b, s.Generation)
	return append(b, s.StaticIndex...)
}

func sameStream(a, b Stream) bool {
	return a.Shard == b.Shard && a.Generation == b.Generation && string(a.StaticIndex) == string(b.StaticIndex)
}

func grantStream(g *storagev1.SharedGrant) Stream {
	return Stream{Shard: int(g.Shard), Generation: g.Generation, StaticIndex: g.StaticIndex}
}

// sharedGroup is one group in memory. Its protos are never modified once
// placed (a change replaces the pointer), as for sessions.
type sharedGroup struct {
	rec *storagev1.SharedGroupRecord
	// streams are keyed by sharedStreamSuffix.
	streams map[string]*storagev1.SharedGroupStream
	grants  map[uint64]*storagev1.SharedGrant
	// ended are the members' connection ends the group applied, by
	// member: no grant goes to a member under an ended guard.
	ended map[string]*storagev1.SharedMemberEnd
}

func newSharedGroup(filter string) *sharedGroup {
	return &sharedGroup{rec: &storagev1.SharedGroupRecord{Filter: filter},
		streams: make(map[string]*storagev1.SharedGroupStream), grants: make(map[uint64]*storagev1.SharedGrant),
		ended: make(map[string]*storagev1.SharedMemberEnd)}
}

// Shared group commands of the shard's command sequence.
type (
	// cmdSharedGrant records a grant: a new one (grant.Id 0), which moves
	// the stream's cursor to grant.ItEnd, or a waiting one (member "")
	// handed to grant.Member.
	cmdSharedGrant struct {
		filter string
		grant  *storagev1.SharedGrant
	}
	// cmdSharedAck forgets a grant its member finished.
	cmdSharedAck struct {
		filter, member string
		id             uint64
	}
	// cmdSharedMemberDown applies a member's connection or session end to
	// the shard's groups (sharedDown).
	cmdSharedMemberDown struct{ down SharedDown }
	// cmdSharedForget deletes a group no session subscribes to any more.
	cmdSharedForget struct{ filter string }
	// cmdSharedStreamGone forgets a group's stream whose generation was
	// dropped: its cursor and the grants of it that wait for a member
	// (their messages are gone).
	cmdSharedStreamGone struct {
		filter string
		stream Stream
	}
)

func (cmdSharedGrant) isCommand()      {}
func (cmdSharedAck) isCommand()        {}
func (cmdSharedMemberDown) isCommand() {}
func (cmdSharedStreamGone) isCommand() {}
func (cmdSharedForget) isCommand()     {}

// SharedDown is the end of a member's connection, or of its membership
// (Final: its session ended, or it unsubscribed). It concerns the grants
// the member got under Guard or before.
type SharedDown struct {
	Member string
	Guard  uint64
	Final  bool
	// Resumed: the session resumed on a new connection, which delivers the
	// recorded grants itself: only the others go back.
	Resumed bool
	// KeepQoS2: every QoS 2 grant stays, recorded or not: the gateway
	// link of the member broke, and a gateway that lives on may still
	// record it (its session's end decides later).
	KeepQoS2 bool
	// Stream, when set, limits the end to the grants of one stream that
	// are not in Held: grants the member's gateway says it does not hold
	// (a new reader of the stream), which go back whatever their QoS.
	Stream *Stream
	Held   []uint64
	// Filters limits the end to these groups; nil: every group.
	Filters []string
	// Recorded are the grants the member's session has batch records of
	// (none for a session that is not durable: it commits no records).
	Recorded []uint64
	// Groups are the member's shared subscriptions (a durable session's),
	// which a final end may leave without members.
	Groups []string
	// Done are grants the member finished (its rings' done_grants): they
	// are forgotten, whatever else the end does.
	Done []uint64
}

// sharedDownOf returns the SharedDown of a session's end. Every end has
// one, as a session that is not durable holds grants without dsd knowing
// its subscriptions; SharedMembersDown finds quickly when it holds none.
func sharedDownOf(cid string, s *sessionState, final, resumed bool) SharedDown {
	d := SharedDown{Member: cid, Guard: s.rec.GetGuard(), Final: final, Resumed: resumed, Recorded: recordedGrants(s), Done: doneGrants(s)}
	for _, sub := range s.subs {
		if f := sub.GetTopicFilter(); strings.HasPrefix(f, sharedPrefix) {
			d.Groups = append(d.Groups, f)
		}
	}
	slices.Sort(d.Groups)
	return d
}

// doneGrants lists the grants a session's rings say it finished.
func doneGrants(s *sessionState) []uint64 {
	var ids []uint64
	for _, r := range s.streams {
		ids = append(ids, r.GetDoneGrants()...)
	}
	slices.Sort(ids)
	return ids
}

// recordedGrants lists the grants a session's rings record.
func recordedGrants(s *sessionState) []uint64 {
	var ids []uint64
	for _, r := range s.streams {
		for _, b := range r.GetBatches() {
			if b.GetSharedGrant() != 0 {
				ids = append(ids, b.GetSharedGrant())
			}
		}
	}
	slices.Sort(ids)
	return ids
}

func applyShared(st *shardState, cmd command) applyResult {
	switch c := cmd.(type) {
	case cmdSharedGrant:
		return applySharedGrant(st, c)
	case cmdSharedAck:
		g := st.groups[c.filter]
		if g == nil || g.grants[c.id] == nil || g.grants[c.id].Member != c.member {
			return applyResult{} // gone already, or handed on: nothing to forget
		}
		delete(g.grants, c.id)
		return applyResult{writes: []write{{key: sharedKey(st.shard, c.filter, subSharedGrant, idSuffix(c.id))}}}
	case cmdSharedMemberDown:
		return applySharedMemberDown(st, c.down)
	case cmdSharedStreamGone:
		return applySharedStreamGone(st, c)
	case cmdSharedForget:
		g := st.groups[c.filter]
		if g == nil {
			return applyResult{}
		}
		delete(st.groups, c.filter)
		p := sharedGroupPrefix(st.shard, c.filter)
		return applyResult{writes: []write{{key: p, end: prefixEnd(p)}}}
	}
	// Invariant: apply sends here only the commands this switch covers.
	panic(fmt.Sprintf("storage: unknown shared group command %T", cmd))
}

func applySharedGrant(st *shardState, c cmdSharedGrant) applyResult {
	g := st.groups[c.filter]
	in := c.grant
	if end := g.endOf(in.Member); end != nil && in.Guard <= end.Guard {
		// The member's connection ended before this turn recorded its
		// grant (a reader at another site, or one whose entry had not
		// ended yet): the grant would stay with a member that never
		// delivers it.
		return applyResult{err: fmt.Errorf("%w: shared group %q: member %q guard %d", ErrSharedMemberEnded, c.filter, in.Member, in.Guard)}
	}
	if in.Id != 0 {
		old := g.grantOf(in.Id)
		if old == nil || old.Member != "" {
			return applyResult{err: fmt.Errorf("%w: shared group %q: grant %d is not waiting", ErrInvalidArgument, c.filter, in.Id)}
		}
		ng := proto.CloneOf(old)
		ng.Member, ng.Guard, ng.Qos2, ng.Redelivery = in.Member, in.Guard, in.Qos2, true
		g.grants[ng.Id] = ng
		res := applyResult{writes: []write{{key: sharedKey(st.shard, c.filter, subSharedGrant, idSuffix(ng.Id)), value: encodeValue(ng)}}}
		res.sess.grant = ng.Id
		return res
	}
	if cur := g.streamOf(grantStream(in)); cur != nil && !bytes.Equal(cur.Cursor, in.ItBegin) {
		// Granted by another reader since this one read the cursor (the
		// stream's readers moved to another site meanwhile): never grant
		// a range twice.
		return applyResult{err: fmt.Errorf("%w: shared group %q", ErrSharedMoved, c.filter)}
	}
	if g == nil {
		g = newSharedGroup(c.filter)
		if st.groups == nil {
			st.groups = make(map[string]*sharedGroup)
		}
		st.groups[c.filter] = g
	}
	rec := proto.CloneOf(g.rec)
	rec.LastGrant++
	g.rec = rec
	ng := proto.CloneOf(in)
	ng.Id = rec.LastGrant
	g.grants[ng.Id] = ng
	sk := sharedStreamSuffix(grantStream(ng))
	cur := &storagev1.SharedGroupStream{Shard: ng.Shard, Generation: ng.Generation, StaticIndex: ng.StaticIndex, Cursor: ng.ItEnd}
	g.streams[string(sk)] = cur
	res := applyResult{writes: []write{
		{key: sharedKey(st.shard, c.filter, subSharedRecord, nil), value: encodeValue(rec)},
		{key: sharedKey(st.shard, c.filter, subSharedStream, sk), value: encodeValue(cur)},
		{key: sharedKey(st.shard, c.filter, subSharedGrant, idSuffix(ng.Id)), value: encodeValue(ng)},
	}}
	res.sess.grant = ng.Id
	return res
}

func applySharedStreamGone(st *shardState, c cmdSharedStreamGone) applyResult {
	g := st.groups[c.filter]
	if g == nil {
		return applyResult{}
	}
	var res applyResult
	sk := sharedStreamSuffix(c.stream)
	if _, ok := g.streams[string(sk)]; ok {
		delete(g.streams, string(sk))
		res.writes = append(res.writes, write{key: sharedKey(st.shard, c.filter, subSharedStream, sk)})
	}
	for _, id := range slices.Sorted(maps.Keys(g.grants)) {
		gr := g.grants[id]
		if gr.Member != "" || !sameStream(grantStream(gr), c.stream) {
			continue // a member's grant ends with its ack or its member
		}
		delete(g.grants, id)
		res.sess.sharedMissed += int(gr.Count)
		res.writes = append(res.writes, write{key: sharedKey(st.shard, c.filter, subSharedGrant, idSuffix(id))})
	}
	return res
}

// streamOf is the group's cursor record of a stream (nil: none).
func (g *sharedGroup) streamOf(st Stream) *storagev1.SharedGroupStream {
	if g == nil {
		return nil
	}
	return g.streams[string(sharedStreamSuffix(st))]
}

// endOf is the member's last connection end the group applied (nil: none).
func (g *sharedGroup) endOf(member string) *storagev1.SharedMemberEnd {
	if g == nil {
		return nil
	}
	return g.ended[member]
}

// endMember records a member's connection end in the group (guard:
// the end's; for a reconciled end of a session that is gone, the highest
// guard of the member's grants), keeping at most maxSharedEnds.
func (g *sharedGroup) endMember(st *shardState, res *applyResult, member string, guard uint64) {
	if old := g.ended[member]; old != nil && old.Guard >= guard {
		return
	}
	end := &storagev1.SharedMemberEnd{Member: member, Guard: guard, Order: g.rec.LastGrant}
	g.ended[member] = end
	res.writes = append(res.writes, write{key: sharedKey(st.shard, g.rec.Filter, subSharedEnded, []byte(member)), value: encodeValue(end)})
	for len(g.ended) > maxSharedEnds {
		var oldest *storagev1.SharedMemberEnd
		for _, e := range g.ended {
			if oldest == nil || e.Order < oldest.Order || e.Order == oldest.Order && e.Member < oldest.Member {
				oldest = e
			}
		}
		delete(g.ended, oldest.Member)
		res.writes = append(res.writes, write{key: sharedKey(st.shard, g.rec.Filter, subSharedEnded, []byte(oldest.Member))})
	}
}

func (g *sharedGroup) grantOf(id uint64) *storagev1.SharedGrant {
	if g == nil {
		return nil
	}
	return g.grants[id]
}

// applySharedMemberDown hands the member's grants back to their groups,
// but for a recorded QoS 2 grant, which stays with the member while its
// session lives and is dropped (counted) when it ends.
func applySharedMemberDown(st *shardState, d SharedDown) applyResult {
	var res applyResult
	for _, filter := range sortedKeys(st.groups) {
		if d.Filters != nil && !slices.Contains(d.Filters, filter) {
			continue
		}
		g := st.groups[filter]
		// The end of a whole connection closes the member's groups, and
		// those where it held grants, to its guard (SharedMemberEnd): a
		// turn in flight, here or at another site, cannot leave a grant
		// with it any more. Not the other ends: a stream's unheld grants
		// and a broken gateway link (the gateway carries on with the
		// guard), an unsubscription (the connection may subscribe again).
		whole := d.Stream == nil && !d.KeepQoS2 && d.Filters == nil
		isMember, held := slices.Contains(d.Groups, filter), uint64(0)
		for _, id := range sortedKeys(g.grants) {
			gr := g.grants[id]
			if gr.Member != d.Member || gr.Guard > d.Guard {
				continue
			}
			held = max(held, gr.Guard)
			key := sharedKey(st.shard, filter, subSharedGrant, idSuffix(id))
			if slices.Contains(d.Done, id) {
				delete(g.grants, id) // finished: its acknowledgement was lost
				res.writes = append(res.writes, write{key: key})
				continue
			}
			if d.Stream != nil {
				if !sameStream(grantStream(gr), *d.Stream) || slices.Contains(d.Held, id) {
					continue
				}
				ng := proto.CloneOf(gr)
				ng.Member, ng.Redelivery = "", true
				g.grants[id] = ng
				res.writes = append(res.writes, write{key: key, value: encodeValue(ng)})
				res.sess.sharedReturned++
				res.sharedReturnedTo = appendOnce(res.sharedReturnedTo, filter)
				continue
			}
			recorded := slices.Contains(d.Recorded, id)
			if recorded && d.Resumed {
				continue // the new connection resends it
			}
			if gr.Qos2 && (recorded || d.KeepQoS2) {
				if d.Final {
					delete(g.grants, id)
					res.writes = append(res.writes, write{key: key})
					res.sess.sharedDropped += int(gr.Count)
				}
				continue
			}
			ng := proto.CloneOf(gr)
			ng.Member, ng.Redelivery = "", true
			g.grants[id] = ng
			res.writes = append(res.writes, write{key: key, value: encodeValue(ng)})
			res.sess.sharedReturned++
			res.sharedReturnedTo = appendOnce(res.sharedReturnedTo, filter)
		}
		if whole && (isMember || held != 0) {
			guard := d.Guard
			if guard == math.MaxUint64 {
				guard = held // reconciled: the session is gone, with its guard
			}
			if guard != 0 {
				g.endMember(st, &res, d.Member, guard)
			}
		}
	}
	return res
}

func appendOnce(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// loadShared reads the shard's shared groups.
func loadShared(db *DB, st *shardState) error {
	return db.scan(shardPrefix(st.shard, tagSharedGroup), func(k, v []byte) error {
		rest := k[3:]
		if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest))+1 {
			return fmt.Errorf("%w: bad shared group key %s", ErrCorruption, prettyKey(k))
		}
		n := int(binary.BigEndian.Uint16(rest))
		filter, sub, suffix := string(rest[2:2+n]), rest[2+n], rest[2+n+1:]
		if st.groups == nil {
			st.groups = make(map[string]*sharedGroup)
		}
		g := st.groups[filter]
		if g == nil {
			g = newSharedGroup(filter)
			st.groups[filter] = g
		}
		switch sub {
		case subSharedRecord:
			g.rec = &storagev1.SharedGroupRecord{}
			return decodeValue(k, v, g.rec)
		case subSharedStream:
			m := &storagev1.SharedGroupStream{}
			g.streams[string(suffix)] = m
			return decodeValue(k, v, m)
		case subSharedGrant:
			m := &storagev1.SharedGrant{}
			if len(suffix) != 8 {
				return fmt.Errorf("%w: bad shared group key %s", ErrCorruption, prettyKey(k))
			}
			g.grants[binary.BigEndian.Uint64(suffix)] = m
			return decodeValue(k, v, m)
		case subSharedEnded:
			m := &storagev1.SharedMemberEnd{}
			g.ended[string(suffix)] = m
			return decodeValue(k, v, m)
		}
		return fmt.Errorf("%w: unknown shared group key %s", ErrCorruption, prettyKey(k))
	})
}

// SharedStreamState is what a group's reader needs of one stream: where a
// new grant starts (nil: the group never read the stream), and the waiting
// grant to hand out first (nil: none).
type SharedStreamState struct {
	Cursor  []byte
	Waiting *storagev1.SharedGrant
}

// SharedStream returns a group's state in one stream. Grants of a stream
// are handed out by one reader at a time (dsd/server), so the state stays
// current until that reader records its next grant.
func (db *DB) SharedStream(filter string, stream Stream) SharedStreamState {
	s := db.shards[db.ShardOf(filter)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.mu.st.groups[filter]
	if g == nil {
		return SharedStreamState{}
	}
	var out SharedStreamState
	if cur := g.streams[string(sharedStreamSuffix(stream))]; cur != nil {
		out.Cursor = cur.Cursor
	}
	for _, gr := range g.grants {
		if gr.Member == "" && sameStream(grantStream(gr), stream) && (out.Waiting == nil || gr.Id < out.Waiting.Id) {
			out.Waiting = gr
		}
	}
	if out.Waiting != nil {
		out.Waiting = proto.CloneOf(out.Waiting)
	}
	return out
}

// GrantShared records a grant of a shared group and returns its id once it
// is durable: a new grant (g.Id 0: the stream's cursor moves to g.ItEnd),
// or a waiting grant (g.Id set) handed to g.Member.
func (db *DB) GrantShared(ctx context.Context, filter string, g *storagev1.SharedGrant) (uint64, error) {
	if !strings.HasPrefix(filter, sharedPrefix) || g.GetMember() == "" {
		return 0, fmt.Errorf("%w: grant of %q to %q", ErrInvalidArgument, filter, g.GetMember())
	}
	if err := db.writeRefusal(); err != nil {
		return 0, err
	}
	g = proto.CloneOf(g)
	a, err := db.sharedDo(ctx, db.ShardOf(filter), cmdSharedGrant{filter: filter, grant: g})
	return a.Grant, err
}

// AckShared forgets a grant its member finished. A grant that is gone or
// belongs to another member by now is left alone.
func (db *DB) AckShared(ctx context.Context, filter, member string, id uint64) error {
	if !strings.HasPrefix(filter, sharedPrefix) {
		return fmt.Errorf("%w: shared ack of %q", ErrInvalidArgument, filter)
	}
	_, err := db.sharedDo(ctx, db.ShardOf(filter), cmdSharedAck{filter: filter, member: member, id: id})
	return err
}

// SharedMembersDown applies members' connection or membership ends to
// every group holding their grants, and forgets the groups a final end
// left without members. It runs after the commit that ended them (and at
// Open for ends a crash lost).
func (db *DB) SharedMembersDown(ctx context.Context, downs []SharedDown) error {
	for _, d := range downs {
		var held []string
		for _, s := range db.shards {
			remote, _ := s.elsewhere()
			if remote == nil && s.ledElsewhere() {
				continue // a replicated shard this site does not lead, and no way to its leader
			}
			// This site's view of the member's grants may lag the shard's
			// leader by the last few milliseconds (a follower), and a turn
			// may record a grant after the end: a durable member's end goes
			// to each of its groups' shards whatever the view, where it
			// also closes the group to the ended guard (SharedMemberEnd).
			groups := s.groupsWithGrantsOf(d.Member, d.Filters)
			if d.Filters == nil {
				for _, f := range d.Groups {
					if db.ShardOf(f) == s.id && !slices.Contains(groups, f) {
						groups = append(groups, f)
					}
				}
			}
			if len(groups) == 0 {
				continue
			}
			held = append(held, groups...)
			a, err := db.sharedDo(ctx, s.id, cmdSharedMemberDown{down: d})
			if err != nil {
				return err
			}
			db.sharedStats.returned.Add(int64(a.Returned))
			db.sharedStats.dropped.Add(int64(a.Dropped))
			if wake := db.sharedWake.Load(); wake != nil && a.Returned > 0 {
				for _, g := range groups {
					(*wake)(g)
				}
			}
		}
		if !d.Final {
			continue
		}
		groups := d.Filters
		if groups == nil {
			groups = append(d.Groups, held...)
		}
		for _, filter := range groups {
			if err := db.ForgetSharedIfUnused(ctx, filter); err != nil {
				return err
			}
		}
	}
	return nil
}

// groupsWithGrantsOf lists the shard's groups (among filters, nil: all)
// where member holds a grant.
func (s *shard) groupsWithGrantsOf(member string, filters []string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for f, g := range s.mu.st.groups {
		if filters != nil && !slices.Contains(filters, f) {
			continue
		}
		for _, gr := range g.grants {
			if gr.Member == member {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// SetSharedWake tells the DB how to wake a group's readers when grants
// went back to it (dsd/server), so they are handed on at once.
func (db *DB) SetSharedWake(wake func(filter string)) { db.sharedWake.Store(&wake) }

// SetSharedLive tells the DB how to learn whether a group has a member
// connected now (dsd/server: a reader of the group on some gateway link).
// A group is forgotten only when it has none and no session subscribes.
func (db *DB) SetSharedLive(live func(filter string) bool) { db.sharedLive.Store(&live) }

// ForgetSharedIfUnused forgets a group that no session subscribes to and
// no connected member reads: its cursor and grants go, and a member that
// subscribes later starts a new group at its own start ("a group queues
// while one of its members' sessions lives", docs/shared-subscriptions.md).
//
// Across sites the decision is the group's shard's leader's: another site
// asks it (SharedRemote.ForgetIfUnused), and it asks the leader of each
// shard it does not lead whether a session there subscribes, and every
// other site whether a member reads there; a question left unanswered
// keeps the group.
func (db *DB) ForgetSharedIfUnused(ctx context.Context, filter string) error {
	shard := db.ShardOf(filter)
	if remote, refusal := db.shards[shard].elsewhere(); remote != nil {
		return remote.ForgetIfUnused(ctx, shard, refusal, filter)
	}
	if sub, err := db.sharedSubscribedAnywhere(ctx, filter); err != nil || sub {
		return err
	}
	if live := db.sharedLive.Load(); live != nil && (*live)(filter) {
		return nil
	}
	if rr := db.sharedRemote.Load(); rr != nil && db.replicated() {
		if live, err := rr.r.Live(ctx, filter); err != nil || live {
			return err
		}
	}
	_, err := db.sharedDo(ctx, shard, cmdSharedForget{filter: filter})
	return err
}

// SharedMembersDownLater runs SharedMembersDown on a goroutine of the DB
// (dsd/server: a gateway link broke, so its members' QoS 1 grants go to
// other members at once, not when the gateway's lease ends).
func (db *DB) SharedMembersDownLater(downs []SharedDown) {
	if db.closing.Load() || len(downs) == 0 {
		return
	}
	db.wg.Add(1)
	go db.sharedAfterCommit(nil, downs)
}

// ForgetSharedLater runs ForgetSharedIfUnused on a goroutine of the DB
// (dsd/server: the last reader of a group left).
func (db *DB) ForgetSharedLater(filter string) {
	db.later(func() {
		if err := db.ForgetSharedIfUnused(db.ctx, filter); err != nil && db.ctx.Err() == nil {
			db.log.Warn("shared group not forgotten", "filter", filter, "err", err)
		}
	})
}

// later runs f on a goroutine of the DB (Close waits for it), unless the
// DB is closing.
func (db *DB) later(f func()) {
	if db.closing.Load() {
		return
	}
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		f()
	}()
}

// shardSubscribes reports whether a live session of shard s subscribes
// to filter, in this site's view of it.
func (db *DB) shardSubscribes(s *shard, filter string) bool {
	now := db.opts.Now().UnixMicro()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ss := range s.mu.st.sessions {
		if !sessionExpired(ss.rec, now) && subscribes(ss.subs, filter) {
			return true
		}
	}
	return false
}

// reconcileShared finds grants whose member's connection ended without
// the groups hearing of it (a crash between the two commits): the member's
// session is gone (final) or disconnected.
func (db *DB) reconcileShared() ([]sharedAck, []SharedDown) {
	var acks []sharedAck
	for _, s := range db.shards {
		for _, cid := range sortedKeys(s.mu.st.sessions) {
			ss := s.mu.st.sessions[cid]
			acks = append(acks, sharedAcksOf(cid, ss.subs, slices.Collect(maps.Values(ss.streams)))...)
		}
	}
	members := map[string]bool{}
	for _, s := range db.shards {
		for _, g := range s.mu.st.groups {
			for _, gr := range g.grants {
				if gr.Member != "" {
					members[gr.Member] = true
				}
			}
		}
	}
	var downs []SharedDown
	now := db.opts.Now().UnixMicro()
	for _, m := range sortedKeys(members) {
		ss := db.shards[db.ShardOf(m)].mu.st.sessions[m]
		switch {
		case ss == nil || sessionExpired(ss.rec, now):
			downs = append(downs, SharedDown{Member: m, Guard: math.MaxUint64, Final: true})
		case !ss.rec.Connected:
			downs = append(downs, SharedDown{Member: m, Guard: ss.rec.Guard, Recorded: recordedGrants(ss), Done: doneGrants(ss)})
		}
	}
	return acks, downs
}

// SharedGrants lists a group's grants, by id (tests).
func (db *DB) SharedGrants(filter string) []*storagev1.SharedGrant {
	if gs := db.SharedGroups(filter); len(gs) > 0 {
		return gs[0].Grants
	}
	return nil
}

// sharedAck is a member's finished grant of a group, for the group's shard.
type sharedAck struct {
	filter, member string
	id             uint64
}

// sharedAcksOf lists the finished grants a commit's rings carry.
func sharedAcksOf(cid string, subs map[uint64]*storagev1.Subscription, rings []*storagev1.StreamRing) []sharedAck {
	var out []sharedAck
	for _, r := range rings {
		if len(r.GetDoneGrants()) == 0 {
			continue
		}
		f := subs[r.GetKey().GetSubscriptionId()].GetTopicFilter()
		if !strings.HasPrefix(f, sharedPrefix) {
			continue
		}
		for _, id := range r.GetDoneGrants() {
			out = append(out, sharedAck{filter: f, member: cid, id: id})
		}
	}
	return out
}

// applySharedAcks forgets finished grants (idempotent: a grant gone, or
// another member's by now, is left alone), for the groups' shards.
func (db *DB) applySharedAcks(ctx context.Context, acks []sharedAck) error {
	for _, a := range acks {
		shard := db.ShardOf(a.filter)
		// A follower's view may not have the grant yet: the leader
		// decides (an ack is idempotent). A grant the view saw granted
		// and then forgotten is gone for good: a ring's done list repeats
		// its grants in every commit, which need no call.
		if remote, _ := db.shards[shard].elsewhere(); remote != nil {
			if db.grantGone(a) {
				continue
			}
		} else if !db.holdsGrant(a) {
			continue
		}
		if _, err := db.sharedDo(ctx, shard, cmdSharedAck(a)); err != nil {
			return err
		}
	}
	return nil
}

// grantGone reports whether this site's view of the group's shard saw the
// grant recorded and then forgotten (grant ids only grow in a group).
func (db *DB) grantGone(a sharedAck) bool {
	s := db.shards[db.ShardOf(a.filter)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.mu.st.groups[a.filter]
	return g != nil && g.rec.GetLastGrant() >= a.id && g.grants[a.id] == nil
}

func (db *DB) holdsGrant(a sharedAck) bool {
	s := db.shards[db.ShardOf(a.filter)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.mu.st.groups[a.filter]
	return g != nil && g.grants[a.id].GetMember() == a.member
}

// sharedAfterCommit applies, on a goroutine of the DB, what a commit (or
// Open's reconciliation) found: finished grants first, then members' ends
// (which must not hand a finished grant on). A failure (the DB closing)
// leaves them to the next Open's reconciliation.
func (db *DB) sharedAfterCommit(acks []sharedAck, downs []SharedDown) {
	defer db.wg.Done()
	err := db.applySharedAcks(db.ctx, acks)
	if err == nil {
		err = db.SharedMembersDown(db.ctx, downs)
	}
	if err != nil && db.ctx.Err() == nil {
		db.log.Warn("shared groups: update not applied (reconciled at next open)", "err", err)
	}
}

// SharedStats counts what members' ends and dropped generations did to
// shared groups.
type SharedStats struct {
	// Returned counts grants handed back to their group (to go to another
	// member); Dropped counts the messages of recorded QoS 2 grants dropped
	// because their member's session ended (MQTT 5 section 4.8.2); Missed
	// counts the messages of grants that waited for a member when their
	// generation was dropped.
	Returned, Dropped, Missed int64
}

type sharedCounters struct{ returned, dropped, missed atomic.Int64 }

// SharedStats returns the shared group counters since Open.
func (db *DB) SharedStats() SharedStats {
	return SharedStats{Returned: db.sharedStats.returned.Load(), Dropped: db.sharedStats.dropped.Load(),
		Missed: db.sharedStats.missed.Load()}
}

// goneShared is a group's stream of a generation that is not live.
type goneShared struct {
	filter string
	stream Stream
}

// goneSharedStreams lists the groups' streams (cursors and waiting grants)
// whose generation was dropped.
func (db *DB) goneSharedStreams() []goneShared {
	live := make([]map[uint64]bool, len(db.shards))
	for i, s := range db.shards {
		s.mu.RLock()
		live[i] = make(map[uint64]bool, len(s.mu.st.gens))
		for _, g := range s.mu.st.gens {
			live[i][g.meta.Id] = true
		}
		s.mu.RUnlock()
	}
	gone := func(st Stream) bool { return st.Shard < len(live) && !live[st.Shard][st.Generation] }
	var out []goneShared
	add := func(filter string, st Stream) {
		if gone(st) && !slices.ContainsFunc(out, func(o goneShared) bool { return o.filter == filter && sameStream(o.stream, st) }) {
			out = append(out, goneShared{filter, st})
		}
	}
	for _, s := range db.shards {
		if s.ledElsewhere() {
			continue // its leader forgets them
		}
		s.mu.RLock()
		for _, filter := range sortedKeys(s.mu.st.groups) {
			g := s.mu.st.groups[filter]
			for _, k := range slices.Sorted(maps.Keys(g.streams)) {
				cur := g.streams[k]
				add(filter, Stream{Shard: int(cur.Shard), Generation: cur.Generation, StaticIndex: cur.StaticIndex})
			}
			for _, id := range slices.Sorted(maps.Keys(g.grants)) {
				if gr := g.grants[id]; gr.Member == "" {
					add(filter, grantStream(gr))
				}
			}
		}
		s.mu.RUnlock()
	}
	return out
}

// forgetGoneSharedLater forgets, on a goroutine of the DB, the groups'
// streams whose generation was dropped (after a drop, and at Open for a
// drop a crash interrupted): no reader would ever read them again, so
// their waiting grants would stay for the group's life.
func (db *DB) forgetGoneSharedLater() {
	if db.closing.Load() {
		return
	}
	gone := db.goneSharedStreams()
	if len(gone) == 0 {
		return
	}
	db.later(func() {
		for _, g := range gone {
			if err := db.SharedStreamGone(db.ctx, g.filter, g.stream); err != nil && db.ctx.Err() == nil {
				db.log.Warn("shared group: dropped stream not forgotten (again at the next drop or open)", "filter", g.filter, "err", err)
				return
			}
		}
	})
}

// SharedStreamGone forgets a group's stream whose generation was dropped
// (a read of it failed with ErrGenerationDropped): its cursor, and the
// grants of it that waited for a member, counted as missed. A grant a
// member holds ends as usual (its ack, or its member's end).
func (db *DB) SharedStreamGone(ctx context.Context, filter string, stream Stream) error {
	if !strings.HasPrefix(filter, sharedPrefix) {
		return fmt.Errorf("%w: %q is not a shared filter", ErrInvalidArgument, filter)
	}
	a, err := db.sharedDo(ctx, db.ShardOf(filter), cmdSharedStreamGone{filter: filter, stream: stream})
	if err != nil {
		return err
	}
	db.sharedStats.missed.Add(int64(a.Missed))
	return nil
}

// ReturnUnheld hands back the member's grants of one stream, under guard,
// that its gateway does not hold (a new reader of the stream lists those it
// holds): dsd restarted after recording them, or the gateway dropped their
// batch. It writes only when there are such grants.
func (db *DB) ReturnUnheld(ctx context.Context, filter, member string, guard uint64, stream Stream, held []uint64) error {
	s := db.shards[db.ShardOf(filter)]
	s.mu.RLock()
	stale := false
	if g := s.mu.st.groups[filter]; g != nil {
		for id, gr := range g.grants {
			stale = stale || gr.Member == member && gr.Guard <= guard && sameStream(grantStream(gr), stream) && !slices.Contains(held, id)
		}
	}
	s.mu.RUnlock()
	if !stale {
		return nil
	}
	return db.SharedMembersDown(ctx, []SharedDown{{Member: member, Guard: guard, Filters: []string{filter}, Stream: &stream, Held: held}})
}

// SharedGroupInfo is one group as ListSharedGroups shows it.
type SharedGroupInfo struct {
	Filter  string
	Shard   int
	Streams []*storagev1.SharedGroupStream
	Grants  []*storagev1.SharedGrant
}

// SharedGroups lists the groups (filter "" : all), by filter, with their
// streams and grants.
func (db *DB) SharedGroups(filter string) []SharedGroupInfo {
	var out []SharedGroupInfo
	for _, s := range db.shards {
		s.mu.RLock()
		for f, g := range s.mu.st.groups {
			if filter != "" && f != filter {
				continue
			}
			gi := SharedGroupInfo{Filter: f, Shard: s.id}
			for _, k := range sortedKeys(g.streams) {
				gi.Streams = append(gi.Streams, proto.CloneOf(g.streams[k]))
			}
			for _, id := range sortedKeys(g.grants) {
				gi.Grants = append(gi.Grants, proto.CloneOf(g.grants[id]))
			}
			out = append(out, gi)
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b SharedGroupInfo) int { return strings.Compare(a.Filter, b.Filter) })
	return out
}
