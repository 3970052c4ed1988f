package storage

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// sessionState is one session in memory: its record and its large parts,
// each keyed as on disk. The protos in it are never modified once placed:
// a change replaces the pointer, so a reader's clone under RLock is safe.
type sessionState struct {
	rec    *storagev1.SessionRecord
	subs   map[uint64]*storagev1.Subscription
	states map[uint64]*storagev1.SubscriptionState
	// streams and retained are keyed by their key suffix (session_keys.go).
	streams  map[string]*storagev1.StreamRing
	retained map[string]*storagev1.RetainedBatch
}

// newSessionState returns the state of a new session. Its maps are nil
// until something is put in them (putIn): the cache holds every session
// for its life, and most hold no streams or retained batches (an empty
// map costs its header).
func newSessionState() *sessionState { return &sessionState{} }

// putIn sets (*m)[k], making the map first if it is nil.
func putIn[K comparable, V any](m *map[K]V, k K, v V) {
	if *m == nil {
		*m = make(map[K]V, 1)
	}
	(*m)[k] = v
}

// cloneOrNil is maps.Clone with nil for an empty map.
func cloneOrNil[M ~map[K]V, K comparable, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// Session commands of the shard's command sequence.
type (
	cmdOpenSession struct {
		nowUs int64
		req   OpenSessionRequest
	}
	cmdCommitSession struct {
		nowUs  int64
		commit *storagev1.SessionCommit
	}
	cmdDisconnect struct {
		nowUs int64
		req   DisconnectRequest
	}
	cmdDeleteSession struct {
		nowUs    int64
		clientID string
		guard    *uint64
	}
	cmdRelease struct {
		nowUs    int64
		clientID string
		guard    uint64
		packetID uint16
	}
	// cmdSessionGC deletes the shard's sessions whose expiry passed.
	cmdSessionGC struct{ nowUs int64 }
	// cmdEndGatewayEpoch ends, abnormally, the connections of the shard's
	// sessions still owned by a dead gateway epoch (lease expiry).
	cmdEndGatewayEpoch struct {
		nowUs     int64
		gatewayID string
		epoch     uint64
		// watermarkUs: as DisconnectRequest's.
		watermarkUs int64
	}
)

func (cmdOpenSession) isCommand()     {}
func (cmdCommitSession) isCommand()   {}
func (cmdDisconnect) isCommand()      {}
func (cmdDeleteSession) isCommand()   {}
func (cmdRelease) isCommand()         {}
func (cmdSessionGC) isCommand()       {}
func (cmdEndGatewayEpoch) isCommand() {}

// sessionOutcome is apply's answer to a session command.
type sessionOutcome struct {
	open     OpenSessionResult
	ended    bool // cmdDisconnect: the session ended
	deleted  bool // cmdDeleteSession
	released bool // cmdRelease
	swept    int  // cmdSessionGC
	// willsFired counts the wills the command stored.
	willsFired int
	// epochEnded counts the connections cmdEndGatewayEpoch ended.
	epochEnded int
	// grant is cmdSharedGrant's grant id; sharedReturned and
	// sharedDropped count what cmdSharedMemberDown did (grants handed back,
	// messages of recorded QoS 2 grants dropped).
	grant                         uint64
	sharedReturned, sharedDropped int
	// sharedMissed counts the messages of the waiting grants
	// cmdSharedStreamGone forgot.
	sharedMissed int
}

// Limits of session state.
const (
	// MaxBatchesPerStream bounds the batch records of one stream ring.
	MaxBatchesPerStream = 64
	// neverExpires is the MQTT 5 Session Expiry Interval that never expires.
	neverExpires = math.MaxUint32
)

// sessionExpired: a disconnected session whose disconnected_at + expiry <=
// now is gone, whether or not the sweep deleted it yet.
func sessionExpired(r *storagev1.SessionRecord, nowUs int64) bool {
	if r.Connected || r.ExpiryIntervalS == neverExpires {
		return false
	}
	return r.DisconnectedAtUs+int64(r.ExpiryIntervalS)*1e6 <= nowUs
}

func applySession(st *shardState, cmd command) applyResult {
	switch c := cmd.(type) {
	case cmdOpenSession:
		return applyOpenSession(st, c)
	case cmdCommitSession:
		return applyCommitSession(st, c)
	case cmdDisconnect:
		return applyDisconnect(st, c)
	case cmdDeleteSession:
		return applyDeleteSession(st, c)
	case cmdRelease:
		return applyRelease(st, c)
	case cmdSessionGC:
		return applySessionGC(st, c)
	case cmdEndGatewayEpoch:
		return applyEndGatewayEpoch(st, c)
	case cmdFireWills:
		return applyFireWills(st, c)
	case cmdWillRetainedDone:
		return applyWillRetainedDone(st, c)
	}
	// Invariant: apply sends here only the session commands this switch
	// covers; another type is a bug in this package, never input.
	panic(fmt.Sprintf("storage: unknown session command %T", cmd))
}

// guardedSession returns the session of cid if guard is its current guard.
func guardedSession(st *shardState, cid string, guard uint64) (*sessionState, error) {
	s := st.sessions[cid]
	if s == nil {
		return nil, fmt.Errorf("%w: %q", ErrSessionNotFound, cid)
	}
	if s.rec.Guard != guard {
		return nil, fmt.Errorf("%w: session %q: guard %d, current %d", ErrStaleGuard, cid, guard, s.rec.Guard)
	}
	return s, nil
}

func applyOpenSession(st *shardState, c cmdOpenSession) applyResult {
	r := c.req
	cid := r.ClientID
	old := st.sessions[cid]
	expired := old != nil && sessionExpired(old.rec, c.nowUs)
	if old != nil && !expired && old.rec.Username != r.Username && !r.AllowCrossIdentityTakeover {
		return applyResult{err: fmt.Errorf("%w: session %q, username %q", ErrIdentityMismatch, cid, r.Username)}
	}
	var res applyResult
	// The guard is above every guard of the shard and every producer epoch
	// of the client, so a Store under it starts a new sequence.
	guard := st.guardCounter + 1
	if p := st.producers[cid]; p != nil && p.Epoch >= guard {
		guard = p.Epoch + 1
	}
	st.guardCounter = guard
	res.writes = append(res.writes, write{key: sessionGuardKey(st.shard), value: encodeValue(&storagev1.SessionGuardCounter{Last: guard})})
	resume := old != nil && !expired && !r.CleanStart
	if old != nil {
		reason := RevokedTakeover
		switch {
		case expired:
			reason = RevokedExpired
		case !old.rec.Connected && !resume:
			reason = RevokedDeleted
		case !old.rec.Connected:
			reason = RevokedResumed
		}
		res.revoked = append(res.revoked, revokedGuard(old.rec, reason))
		res.shared = append(res.shared, sharedDownOf(cid, old, !resume, resume))
		res.sess.open.TakenOver = old.rec.Connected && !expired
		// The old session's will (docs/sessions.md, "Wills"). Resuming the
		// same session cancels it, whether the old connection is still
		// open (a takeover: the new connection exists before the old one
		// closes) or its timer is armed [MQTT-3.1.3-9]. Otherwise the old
		// session ends here (clean start [MQTT-3.1.2-4], or expiry): a
		// pending will, or the will of the connection taken over, is
		// published now, in this batch (MQTT 5 §3.1.3.2.2 "or the Session
		// ends", §3.1.4 point 2).
		if !resume && (old.rec.WillAtUs != 0 || (old.rec.Connected && !expired && old.rec.Will != nil)) {
			fireWill(st, &res, proto.CloneOf(old.rec), c.nowUs)
		}
	}
	var s *sessionState
	var rec *storagev1.SessionRecord
	if resume {
		s = old
		rec = proto.CloneOf(old.rec)
		if !old.rec.Connected {
			res.sess.open.EndedWatermarkUs = old.rec.EndedWatermarkUs
		}
		rec.EndedWatermarkUs = 0 // connected: a takeover knows no bound
	} else {
		if old != nil {
			// A clean start is a new session: the old state and its held
			// QoS 2 ids go in this batch.
			res.writes = append(res.writes, deleteSessionWrites(st, cid, old)...)
		}
		s = newSessionState()
		rec = &storagev1.SessionRecord{ClientId: cid, CreatedAtUs: c.nowUs}
	}
	rec.Username = r.Username
	rec.ProtocolVersion = r.ProtocolVersion
	rec.ExpiryIntervalS = r.ExpiryIntervalS
	rec.ConnectExpiryIntervalS = r.ExpiryIntervalS
	rec.ConnectedAtUs = c.nowUs
	rec.DisconnectedAtUs = 0
	rec.Connected = true
	rec.AbnormalDisconnect = false
	rec.OwnerGatewayId = r.GatewayID
	rec.OwnerEpoch = r.GatewayEpoch
	rec.Guard = guard
	rec.Will = r.Will
	// Resuming cancels a pending will [MQTT-3.1.3-9]; an abnormal end of
	// this connection arms the timer again.
	rec.WillAtUs = 0
	s.rec = rec
	st.sessions[cid] = s
	res.writes = append(res.writes, write{key: sessionKey(st.shard, cid, subSessionRecord, nil), value: encodeValue(rec)})
	res.sess.open.SessionPresent = resume
	res.sess.open.Guard = guard
	res.sess.open.Session = snapshotSession(st, cid, s)
	return res
}

// deleteSessionWrites deletes every key of a session (point deletes: the
// engine knows them all) and closes its producer: the held QoS 2 ids are
// dropped and Stores under its guard are refused from now on. It removes
// the session from st.
func deleteSessionWrites(st *shardState, cid string, s *sessionState) []write {
	ws := []write{{key: sessionKey(st.shard, cid, subSessionRecord, nil)}}
	for _, id := range sortedKeys(s.subs) {
		ws = append(ws, write{key: sessionKey(st.shard, cid, subSessionSub, idSuffix(id))})
	}
	for _, id := range sortedKeys(s.states) {
		ws = append(ws, write{key: sessionKey(st.shard, cid, subSessionState, idSuffix(id))})
	}
	for _, k := range sortedKeys(s.streams) {
		ws = append(ws, write{key: sessionKey(st.shard, cid, subSessionStream, []byte(k))})
	}
	for _, k := range sortedKeys(s.retained) {
		ws = append(ws, write{key: sessionKey(st.shard, cid, subSessionRetained, []byte(k))})
	}
	p := st.producers[cid]
	np := &storagev1.ProducerState{Epoch: s.rec.Guard, Closed: true}
	if p != nil && p.Epoch >= s.rec.Guard {
		np.Epoch, np.LastSeq = p.Epoch, p.LastSeq
	}
	st.producers[cid] = np
	ws = append(ws, write{key: producerKey(st.shard, cid), value: encodeValue(np)})
	delete(st.sessions, cid)
	return ws
}

func sortedKeys[K interface{ ~uint64 | ~string }, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

func revokedGuard(r *storagev1.SessionRecord, reason RevokeReason) GuardRevoked {
	return GuardRevoked{ClientID: r.ClientId, Guard: r.Guard, GatewayID: r.OwnerGatewayId, GatewayEpoch: r.OwnerEpoch,
		Connected: r.Connected, Reason: reason}
}

func applyCommitSession(st *shardState, c cmdCommitSession) applyResult {
	cm := c.commit
	cid := cm.ClientId
	s, err := guardedSession(st, cid, cm.Guard)
	if err != nil {
		return applyResult{err: err}
	}
	// Work on shallow copies, so a refused commit leaves st unchanged.
	n := &sessionState{rec: s.rec, subs: cloneOrNil(s.subs), states: cloneOrNil(s.states),
		streams: cloneOrNil(s.streams), retained: cloneOrNil(s.retained)}
	bad := func(format string, args ...any) applyResult {
		return applyResult{err: fmt.Errorf("%w: commit of session %q: "+format, append([]any{ErrInvalidArgument, cid}, args...)...)}
	}
	touched := map[string]bool{} // keys (as strings) rewritten or deleted
	key := func(sub byte, suffix []byte) string { return string(sessionKey(st.shard, cid, sub, suffix)) }
	for _, id := range cm.DeleteSubscriptions {
		delete(n.subs, id)
		touched[key(subSessionSub, idSuffix(id))] = true
	}
	for _, k := range cm.DeleteStreams {
		delete(n.streams, string(streamSuffix(k)))
		touched[key(subSessionStream, streamSuffix(k))] = true
	}
	for _, k := range cm.DeleteRetained {
		delete(n.retained, string(retainedSuffix(k)))
		touched[key(subSessionRetained, retainedSuffix(k))] = true
	}
	for _, v := range cm.PutStates {
		if v.Id == 0 || v.SubscriptionId == 0 {
			return bad("state version with id %d, subscription %d", v.Id, v.SubscriptionId)
		}
		if v.Qos > 2 || v.RetainHandling > 2 {
			return bad("state version %d: QoS %d, retain handling %d", v.Id, v.Qos, v.RetainHandling)
		}
		if old, ok := n.states[v.Id]; ok {
			if !proto.Equal(old, v) {
				return bad("state version %d is immutable", v.Id)
			}
			continue
		}
		putIn(&n.states, v.Id, v)
		touched[key(subSessionState, idSuffix(v.Id))] = true
	}
	for _, v := range cm.PutSubscriptions {
		if v.Id == 0 {
			return bad("subscription id 0")
		}
		putIn(&n.subs, v.Id, v)
		touched[key(subSessionSub, idSuffix(v.Id))] = true
	}
	for _, v := range cm.PutStreams {
		if v.Key == nil || v.Key.SubscriptionId == 0 {
			return bad("stream ring without a key")
		}
		if len(v.Batches) > MaxBatchesPerStream {
			return bad("stream ring of %d batches (at most %d)", len(v.Batches), MaxBatchesPerStream)
		}
		putIn(&n.streams, string(streamSuffix(v.Key)), v)
		touched[key(subSessionStream, streamSuffix(v.Key))] = true
	}
	for _, v := range cm.PutRetained {
		if v.Key == nil || v.Key.SubscriptionId == 0 {
			return bad("retained batch without a key")
		}
		putIn(&n.retained, string(retainedSuffix(v.Key)), v)
		touched[key(subSessionRetained, retainedSuffix(v.Key))] = true
	}
	// Every reference to a state version must resolve; versions nothing
	// refers to are deleted.
	used := map[uint64]bool{}
	for _, v := range n.subs {
		if _, ok := n.states[v.CurrentState]; !ok {
			return bad("subscription %d refers to unknown state version %d", v.Id, v.CurrentState)
		}
		used[v.CurrentState] = true
	}
	for _, v := range n.streams {
		for _, b := range v.Batches {
			if _, ok := n.states[b.SubState]; !ok {
				return bad("a batch of subscription %d refers to unknown state version %d", v.Key.SubscriptionId, b.SubState)
			}
			used[b.SubState] = true
		}
	}
	for _, v := range n.retained {
		if _, ok := n.states[v.SubState]; !ok {
			return bad("retained batch %d refers to unknown state version %d", v.Key.Id, v.SubState)
		}
		used[v.SubState] = true
	}
	for id := range n.states {
		if !used[id] {
			delete(n.states, id)
			touched[key(subSessionState, idSuffix(id))] = true
		}
	}
	if cm.Seqnos != nil || cm.MissedMessages != nil || cm.LastId != nil {
		rec := proto.CloneOf(s.rec)
		if cm.Seqnos != nil {
			rec.Seqnos = cm.Seqnos
		}
		if cm.MissedMessages != nil {
			rec.MissedMessages = *cm.MissedMessages
		}
		if cm.LastId != nil {
			rec.LastId = *cm.LastId
		}
		n.rec = rec
		touched[key(subSessionRecord, nil)] = true
	}
	var res applyResult
	res.sharedAcks = sharedAcksOf(cid, n.subs, cm.PutStreams)
	// An unsubscribed shared filter ends the membership in its group
	// (a re-subscription in the same commit keeps it).
	var left []string
	for _, id := range cm.DeleteSubscriptions {
		if f := s.subs[id].GetTopicFilter(); strings.HasPrefix(f, sharedPrefix) && !subscribes(n.subs, f) {
			left = append(left, f)
		}
	}
	if len(left) > 0 {
		// Its finished grants are forgotten too (Done), not handed on.
		d := sharedDownOf(cid, s, true, false)
		d.Filters = left
		res.shared = append(res.shared, d)
	}
	prefix := len(sessionPrefix(st.shard, cid))
	for _, k := range sortedKeys(touched) {
		var v proto.Message
		suffix := k[prefix+1:]
		switch k[prefix] {
		case subSessionRecord:
			v = n.rec
		case subSessionSub:
			if m, ok := n.subs[beUint64(suffix)]; ok {
				v = m
			}
		case subSessionState:
			if m, ok := n.states[beUint64(suffix)]; ok {
				v = m
			}
		case subSessionStream:
			if m, ok := n.streams[suffix]; ok {
				v = m
			}
		case subSessionRetained:
			if m, ok := n.retained[suffix]; ok {
				v = m
			}
		}
		w := write{key: []byte(k)}
		if v != nil {
			w.value = encodeValue(v)
		}
		res.writes = append(res.writes, w)
	}
	st.sessions[cid] = n
	return res
}

// subscribes reports whether one of subs has filter.
func subscribes(subs map[uint64]*storagev1.Subscription, filter string) bool {
	for _, v := range subs {
		if v.GetTopicFilter() == filter {
			return true
		}
	}
	return false
}

func beUint64(s string) uint64 {
	var v uint64
	for i := 0; i < len(s) && i < 8; i++ {
		v = v<<8 | uint64(s[i])
	}
	return v
}

func applyDisconnect(st *shardState, c cmdDisconnect) applyResult {
	r := c.req
	s, err := guardedSession(st, r.ClientID, r.Guard)
	if err != nil {
		return applyResult{err: err}
	}
	if r.ExpiryIntervalS != nil && *r.ExpiryIntervalS != 0 && s.rec.ConnectExpiryIntervalS == 0 {
		// [MQTT-3.14.2-2]-era text, MQTT 5 §3.14.2.2.2: a non-zero expiry in
		// DISCONNECT after a zero one in CONNECT is a Protocol Error.
		return applyResult{err: fmt.Errorf("%w: session %q: CONNECT's expiry was 0, DISCONNECT sets %d", ErrSessionExpiryChange, r.ClientID, *r.ExpiryIntervalS)}
	}
	if !s.rec.Connected {
		return applyResult{} // a retried Disconnect: already recorded
	}
	return endConnection(st, r.ClientID, s, c.nowUs, r.Abnormal, r.ExpiryIntervalS, r.watermarkUs)
}

// endConnection records the end of a session's connection at nowUs. A
// normal end (DISCONNECT 0x00) discards the will [MQTT-3.1.2-10]; an
// abnormal one arms the will timer (willDue), and fires the will in this
// batch when it is due now (will delay 0) or the session ends now (expiry
// 0): the will and the session's end are one batch.
func endConnection(st *shardState, cid string, s *sessionState, nowUs int64, abnormal bool, expiry *uint32, watermarkUs int64) applyResult {
	rec := proto.CloneOf(s.rec)
	rec.Connected = false
	rec.DisconnectedAtUs = nowUs
	rec.EndedWatermarkUs = watermarkUs
	rec.AbnormalDisconnect = abnormal
	if expiry != nil {
		rec.ExpiryIntervalS = *expiry
	}
	switch {
	case !abnormal:
		rec.Will, rec.WillAtUs = nil, 0
	case rec.Will != nil:
		rec.WillAtUs = willDue(rec, nowUs)
	}
	var res applyResult
	ended := rec.ExpiryIntervalS == 0
	res.shared = append(res.shared, sharedDownOf(cid, s, ended, false))
	if rec.WillAtUs != 0 && (ended || rec.WillAtUs <= nowUs) {
		fireWill(st, &res, rec, nowUs)
	}
	if ended {
		res.revoked = append(res.revoked, revokedGuard(rec, RevokedEnded))
		res.writes = append(res.writes, deleteSessionWrites(st, cid, s)...)
		res.sess.ended = true
		return res
	}
	s2 := *s
	s2.rec = rec
	st.sessions[cid] = &s2
	st.armWill(rec)
	res.writes = append(res.writes, write{key: sessionKey(st.shard, cid, subSessionRecord, nil), value: encodeValue(rec)})
	return res
}

// applyEndGatewayEpoch ends the connection of every session of the shard
// still connected to the dead epoch, as an abnormal disconnect (lease
// loss, gateway death: the will is armed). Sessions another epoch opened
// since are not touched.
func applyEndGatewayEpoch(st *shardState, c cmdEndGatewayEpoch) applyResult {
	var res applyResult
	for _, cid := range sortedKeys(st.sessions) {
		s := st.sessions[cid]
		if !s.rec.Connected || s.rec.OwnerGatewayId != c.gatewayID || s.rec.OwnerEpoch != c.epoch {
			continue
		}
		r := endConnection(st, cid, s, c.nowUs, true, nil, c.watermarkUs)
		res.writes = append(res.writes, r.writes...)
		res.revoked = append(res.revoked, r.revoked...)
		res.shared = append(res.shared, r.shared...)
		res.willsDropped = append(res.willsDropped, r.willsDropped...)
		res.streamsChanged = res.streamsChanged || r.streamsChanged
		res.messages += r.messages
		res.bytes += r.bytes
		res.sess.willsFired += r.sess.willsFired
		res.sess.epochEnded++
	}
	return res
}

func applyDeleteSession(st *shardState, c cmdDeleteSession) applyResult {
	s := st.sessions[c.clientID]
	if s == nil {
		return applyResult{} // already gone: deleted = false
	}
	if c.guard != nil && *c.guard != s.rec.Guard {
		return applyResult{err: fmt.Errorf("%w: delete of session %q: guard %d, current %d (not mine)", ErrStaleGuard, c.clientID, *c.guard, s.rec.Guard)}
	}
	reason := RevokedDeleted
	if sessionExpired(s.rec, c.nowUs) {
		reason = RevokedExpired
	}
	res := applyResult{revoked: []GuardRevoked{revokedGuard(s.rec, reason)}}
	res.shared = append(res.shared, sharedDownOf(c.clientID, s, true, false))
	// The session ends: a pending will is published [MQTT 5 §3.1.3.2.2];
	// so is the will of a connection an operator's delete closes (a
	// server-side close is abnormal).
	if s.rec.WillAtUs != 0 || (c.guard == nil && s.rec.Connected && s.rec.Will != nil) {
		fireWill(st, &res, proto.CloneOf(s.rec), c.nowUs)
	}
	res.writes = append(res.writes, deleteSessionWrites(st, c.clientID, s)...)
	res.sess.deleted = reason == RevokedDeleted
	return res
}

func applyRelease(st *shardState, c cmdRelease) applyResult {
	if _, err := guardedSession(st, c.clientID, c.guard); err != nil {
		return applyResult{err: err}
	}
	p := st.producers[c.clientID]
	if p == nil {
		return applyResult{}
	}
	i, found := slices.BinarySearch(p.HeldQos2Ids, uint32(c.packetID))
	if !found {
		return applyResult{}
	}
	np := &storagev1.ProducerState{Epoch: p.Epoch, LastSeq: p.LastSeq, Closed: p.Closed,
		HeldQos2Ids: slices.Delete(slices.Clone(p.HeldQos2Ids), i, i+1)}
	st.producers[c.clientID] = np
	res := applyResult{writes: []write{{key: producerKey(st.shard, c.clientID), value: encodeValue(np)}}}
	res.sess.released = true
	return res
}

func applySessionGC(st *shardState, c cmdSessionGC) applyResult {
	var res applyResult
	for _, cid := range sortedKeys(st.sessions) {
		s := st.sessions[cid]
		if !sessionExpired(s.rec, c.nowUs) {
			continue
		}
		res.revoked = append(res.revoked, revokedGuard(s.rec, RevokedExpired))
		res.shared = append(res.shared, sharedDownOf(cid, s, true, false))
		if s.rec.WillAtUs != 0 {
			// Due at the session's end at the latest: late only if dsd
			// was down then.
			fireWill(st, &res, proto.CloneOf(s.rec), c.nowUs)
		}
		res.writes = append(res.writes, deleteSessionWrites(st, cid, s)...)
		res.sess.swept++
	}
	return res
}

// snapshotSession deep-copies a session for a caller, with its held QoS 2
// ids, in key order.
func snapshotSession(st *shardState, cid string, s *sessionState) *storagev1.Session {
	out := &storagev1.Session{Record: proto.CloneOf(s.rec)}
	for _, id := range sortedKeys(s.subs) {
		out.Subscriptions = append(out.Subscriptions, proto.CloneOf(s.subs[id]))
	}
	for _, id := range sortedKeys(s.states) {
		out.States = append(out.States, proto.CloneOf(s.states[id]))
	}
	for _, k := range sortedKeys(s.streams) {
		out.Streams = append(out.Streams, proto.CloneOf(s.streams[k]))
	}
	for _, k := range sortedKeys(s.retained) {
		out.Retained = append(out.Retained, proto.CloneOf(s.retained[k]))
	}
	if p := st.producers[cid]; p != nil && !p.Closed {
		out.HeldQos2Ids = slices.Clone(p.HeldQos2Ids)
	}
	return out
}
