package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Errors of session commands (dsd/server maps them in its one table).
var (
	// ErrSessionNotFound: no session with that client id (or it expired).
	ErrSessionNotFound = errors.New("storage: no such session")
	// ErrStaleGuard: the guard is not the session's current guard: another
	// connection opened the session since, or it was deleted and recreated.
	// For DeleteSession it means "not mine".
	ErrStaleGuard = errors.New("storage: stale session guard")
	// ErrIdentityMismatch: the session belongs to another username and
	// cross-identity takeover is not allowed (CONNACK 0x87 / 0x05).
	ErrIdentityMismatch = errors.New("storage: session belongs to another username")
	// ErrSessionExpiryChange: a DISCONNECT sets a non-zero session expiry
	// after a CONNECT with zero (MQTT 5 §3.14.2.2.2, a Protocol Error).
	ErrSessionExpiryChange = invalidClass("storage: session expiry cannot become non-zero at disconnect")
)

// OpenSessionRequest is a CONNECT as far as dsd is concerned.
type OpenSessionRequest struct {
	ClientID string
	// Username is the authenticated username ("" when anonymous).
	Username        string
	ProtocolVersion uint32
	CleanStart      bool
	// ExpiryIntervalS is the session expiry in seconds; 0xFFFFFFFF never.
	ExpiryIntervalS uint32
	// Will is the connection's will; an abnormal end arms its timer
	// (will.go).
	Will         *storagev1.Will
	GatewayID    string
	GatewayEpoch uint64
	// AllowCrossIdentityTakeover lets another username take the session.
	AllowCrossIdentityTakeover bool
}

// OpenSessionResult is the answer to OpenSession.
type OpenSessionResult struct {
	Shard int
	// SessionPresent: an existing session was resumed.
	SessionPresent bool
	// Guard is the new guard: every later call of this connection carries it.
	Guard uint64
	// Session is the state as stored after the open.
	Session *storagev1.Session
	// TakenOver: the session was connected to another owner, whose guard is
	// now revoked (a GuardRevoked event names it).
	TakenOver bool
	// EndedWatermarkUs is, when a disconnected session resumed, the highest
	// shard watermark when its last connection ended (0: unknown): no
	// message stored at or above it was sent by that connection.
	EndedWatermarkUs int64
}

// DisconnectRequest records the end of a connection.
type DisconnectRequest struct {
	ClientID string
	Guard    uint64
	// Abnormal: anything but DISCONNECT 0x00: the will timer is armed
	// (will.go), and the will fires in this batch when its delay is 0 or
	// the session ends now (expiry 0).
	Abnormal bool
	// ExpiryIntervalS, when set, is MQTT 5 DISCONNECT's Session Expiry.
	ExpiryIntervalS *uint32
	// watermarkUs is the highest shard watermark when the request was
	// made (Disconnect sets it): SessionRecord.ended_watermark_us.
	watermarkUs int64
}

// RevokeReason says why a guard was revoked.
type RevokeReason string

// Reasons of GuardRevoked.
const (
	RevokedTakeover RevokeReason = "takeover" // another connection opened the session
	RevokedResumed  RevokeReason = "resumed"  // a disconnected session was opened again
	RevokedDeleted  RevokeReason = "deleted"  // DeleteSession, or a clean start after a disconnect
	RevokedExpired  RevokeReason = "expired"  // expiry passed (open or sweep)
	RevokedEnded    RevokeReason = "ended"    // an expiry-0 session's Disconnect
)

// GuardRevoked is a session event: (ClientID, Guard) is no longer a valid
// guard, after a committed command. Connected says whether that
// incarnation was still connected to the gateway epoch named (the gateway
// must then close that connection: a kick).
type GuardRevoked struct {
	ClientID     string
	Guard        uint64
	GatewayID    string
	GatewayEpoch uint64
	Connected    bool
	Reason       RevokeReason
}

// sessionEvents holds the GuardRevoked subscribers.
type sessionEvents struct {
	mu struct {
		sync.Mutex
		next uint64
		fns  map[uint64]func(GuardRevoked)
	}
}

// OnGuardRevoked registers fn to be called, in commit order per shard,
// after each command that revoked a guard is committed. fn runs on the
// shard's syncer goroutine and must not block. cancel unregisters it.
func (db *DB) OnGuardRevoked(fn func(GuardRevoked)) (cancel func()) {
	ev := &db.sessionEvents
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.mu.fns == nil {
		ev.mu.fns = make(map[uint64]func(GuardRevoked))
	}
	ev.mu.next++
	id := ev.mu.next
	ev.mu.fns[id] = fn
	return func() {
		ev.mu.Lock()
		delete(ev.mu.fns, id)
		ev.mu.Unlock()
	}
}

func (ev *sessionEvents) fire(events []GuardRevoked) {
	if len(events) == 0 {
		return
	}
	ev.mu.Lock()
	fns := make([]func(GuardRevoked), 0, len(ev.mu.fns))
	for _, id := range sortedKeys(ev.mu.fns) {
		fns = append(fns, ev.mu.fns[id])
	}
	ev.mu.Unlock()
	for _, e := range events {
		for _, fn := range fns {
			fn(e)
		}
	}
}

func (db *DB) validClientID(op, clientID string) error {
	if clientID == "" || len(clientID) > MaxClientIDBytes {
		return fmt.Errorf("%w: %s: client id of %d bytes (1..%d)", ErrInvalidArgument, op, len(clientID), MaxClientIDBytes)
	}
	return nil
}

// sessionDo runs one session command in the client's shard and returns
// after its commit.
func (db *DB) sessionDo(ctx context.Context, clientID string, mk func(nowUs int64) command) (reply, error) {
	if err := db.failErr(); err != nil {
		return reply{}, err
	}
	rep, err := db.shards[db.ShardOf(clientID)].do(ctx, &request{kind: reqSession, mkCmd: mk})
	if err != nil {
		return reply{}, err
	}
	return rep, rep.err
}

// OpenSession opens the session of a CONNECT: it creates it, resumes it
// (clean start false), or replaces it (clean start), and returns a new
// guard. A session whose disconnected_at + expiry <= now is absent and is
// deleted in the same batch; so is the old state on a clean start, with
// its held QoS 2 ids. A session of another username is refused with
// ErrIdentityMismatch unless AllowCrossIdentityTakeover. If the session
// was connected, its old guard is revoked (GuardRevoked, TakenOver).
// Concurrent opens of one client id are serialised by its shard writer:
// the last one owns the session.
func (db *DB) OpenSession(ctx context.Context, req OpenSessionRequest) (OpenSessionResult, error) {
	if err := db.validClientID("open session", req.ClientID); err != nil {
		return OpenSessionResult{}, err
	}
	if req.Will != nil {
		if req.Will.Message == nil {
			return OpenSessionResult{}, fmt.Errorf("%w: open session: will without a message", ErrInvalidArgument)
		}
		if _, err := db.validateStore(req.ClientID, []IngestMessage{IngestMessageOf(req.Will.Message)}, nil); err != nil {
			return OpenSessionResult{}, fmt.Errorf("open session: will: %w", err)
		}
	}
	if err := db.writeRefusal(); err != nil {
		return OpenSessionResult{}, err
	}
	req.Will = proto.CloneOf(req.Will)
	rep, err := db.sessionDo(ctx, req.ClientID, func(now int64) command { return cmdOpenSession{nowUs: now, req: req} })
	if err != nil {
		return OpenSessionResult{}, err
	}
	out := rep.sess.open
	out.Shard = db.ShardOf(req.ClientID)
	return out, nil
}

// CommitSession applies a partial update of a session under its guard
// (see storagev1.SessionCommit): ErrStaleGuard when the guard is not
// current, ErrSessionNotFound when there is no session. Only the keys the
// commit changes are rewritten. State versions that no subscription, batch
// or retained record refers to afterwards are deleted.
func (db *DB) CommitSession(ctx context.Context, c *storagev1.SessionCommit) error {
	if c == nil {
		return fmt.Errorf("%w: commit session: no commit", ErrInvalidArgument)
	}
	return db.CommitSessionNoCopy(ctx, proto.CloneOf(c))
}

// CommitSessionNoCopy is CommitSession for a commit the caller hands over:
// the session keeps parts of it (rings, subscriptions, states) without the
// copy CommitSession makes, so the caller must neither change nor reuse it.
// The gRPC service passes each request it decoded, which nothing else
// holds: the copy was about a quarter of dsd's CPU per commit (fan-out to 32
// subscribers, docs/benchmarks.md).
func (db *DB) CommitSessionNoCopy(ctx context.Context, c *storagev1.SessionCommit) error {
	if c == nil {
		return fmt.Errorf("%w: commit session: no commit", ErrInvalidArgument)
	}
	if err := db.validClientID("commit session", c.ClientId); err != nil {
		return err
	}
	if err := db.writeRefusal(); err != nil {
		return err
	}
	_, err := db.sessionDo(ctx, c.ClientId, func(now int64) command { return cmdCommitSession{nowUs: now, commit: c} })
	return err
}

// Disconnect records the end of the connection that holds the guard. A
// session with expiry 0 (after the optional new expiry) ends now: ended is
// true. After a takeover the old guard is refused (ErrStaleGuard): the
// session stays connected to its new owner.
func (db *DB) Disconnect(ctx context.Context, req DisconnectRequest) (ended bool, err error) {
	if err := db.validClientID("disconnect", req.ClientID); err != nil {
		return false, err
	}
	if req.ExpiryIntervalS != nil {
		v := *req.ExpiryIntervalS
		req.ExpiryIntervalS = &v
	}
	req.watermarkUs = slices.Max(db.Watermarks())
	rep, err := db.sessionDo(ctx, req.ClientID, func(now int64) command { return cmdDisconnect{nowUs: now, req: req} })
	return rep.sess.ended, err
}

// DeleteSession deletes a session and closes its producer state (held QoS
// 2 ids dropped; Stores under its guard refused). With a guard it is
// refused with ErrStaleGuard when the guard is not current ("not mine");
// nil deletes whatever incarnation exists (an operator's delete). deleted
// is false when there was no session, or it had expired.
func (db *DB) DeleteSession(ctx context.Context, clientID string, guard *uint64) (deleted bool, err error) {
	if err := db.validClientID("delete session", clientID); err != nil {
		return false, err
	}
	if guard != nil {
		g := *guard
		guard = &g
	}
	rep, err := db.sessionDo(ctx, clientID, func(now int64) command {
		return cmdDeleteSession{nowUs: now, clientID: clientID, guard: guard}
	})
	return rep.sess.deleted, err
}

// Release drops an inbound QoS 2 packet id held for the session (PUBREL),
// synced, under the guard. released is false when the id was not held.
func (db *DB) Release(ctx context.Context, clientID string, guard uint64, packetID uint16) (released bool, err error) {
	if err := db.validClientID("release", clientID); err != nil {
		return false, err
	}
	if packetID == 0 {
		return false, fmt.Errorf("%w: release: packet id 0", ErrInvalidArgument)
	}
	rep, err := db.sessionDo(ctx, clientID, func(now int64) command {
		return cmdRelease{nowUs: now, clientID: clientID, guard: guard, packetID: packetID}
	})
	return rep.sess.released, err
}

// SweepSessions runs the expiry sweep in every shard now (it also runs
// every SessionGCInterval) and returns the number of sessions deleted.
func (db *DB) SweepSessions(ctx context.Context) (int, error) {
	n := 0
	for _, s := range db.shards {
		if s.ledElsewhere() {
			continue // a replicated shard this site does not lead: its leader's work
		}
		rep, err := s.do(ctx, &request{kind: reqSession, mkCmd: func(now int64) command { return cmdSessionGC{nowUs: now} }})
		if err == nil {
			err = rep.err
		}
		if err != nil {
			return n, err
		}
		n += rep.sess.swept
	}
	return n, nil
}

// GetSession returns a copy of a session's whole state; ok is false when
// there is none, or its expiry passed.
func (db *DB) GetSession(clientID string) (sess *storagev1.Session, shard int, ok bool) {
	shard = db.ShardOf(clientID)
	s := db.shards[shard]
	now := db.opts.Now().UnixMicro()
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss := s.mu.st.sessions[clientID]
	if ss == nil || sessionExpired(ss.rec, now) {
		return nil, shard, false
	}
	return snapshotSession(s.mu.st, clientID, ss), shard, true
}

// SessionGuard returns the current guard of a live session.
func (db *DB) SessionGuard(clientID string) (guard uint64, ok bool) {
	s := db.shards[db.ShardOf(clientID)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss := s.mu.st.sessions[clientID]
	if ss == nil {
		return 0, false
	}
	return ss.rec.Guard, true
}

// CheckSessionGuard reports whether guard is the current guard of the live
// session clientID: ErrSessionNotFound or ErrStaleGuard otherwise (a Read
// or Watch entry tied to the session, dsd/server). A replicated shard's
// view here may lag its leader by the last commits, so a guard above every
// guard this view handed out (the shard's guard counter) is the leader's
// newer one, of an open this site has not applied yet: it is current. Its
// revocation comes after that open, so this site announces it as usual.
func (db *DB) CheckSessionGuard(clientID string, guard uint64) error {
	s := db.shards[db.ShardOf(clientID)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.repl.r.Load() != nil && guard > s.mu.st.guardCounter {
		return nil
	}
	ss := s.mu.st.sessions[clientID]
	if ss == nil {
		return fmt.Errorf("%w: %q", ErrSessionNotFound, clientID)
	}
	if ss.rec.Guard != guard {
		return fmt.Errorf("%w: session %q: guard %d, current %d", ErrStaleGuard, clientID, guard, ss.rec.Guard)
	}
	return nil
}

// SessionOwner returns the gateway id that opened the session last (kept
// after a disconnect) and its current guard; ok is false when there is no
// session. dsd's API uses it to bind a gateway's calls to its own sessions.
func (db *DB) SessionOwner(clientID string) (gatewayID string, guard uint64, ok bool) {
	s := db.shards[db.ShardOf(clientID)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss := s.mu.st.sessions[clientID]
	if ss == nil {
		return "", 0, false
	}
	return ss.rec.OwnerGatewayId, ss.rec.Guard, true
}

// SessionSummary is one session in a listing.
type SessionSummary struct {
	Shard         int
	Record        *storagev1.SessionRecord
	Subscriptions int
	Streams       int
}

// SessionCursor is a position in ListSessions: sessions after (Shard,
// After) in (shard, client id) order. The zero value starts at the
// beginning.
type SessionCursor struct {
	Shard int
	After string
	// Started: After is a client id already returned (the zero cursor has
	// not returned "" yet).
	Started bool
}

// ListSessions returns up to limit live sessions from cursor on, in
// (shard, client id) order, and the cursor of the next page (nil at the
// end).
func (db *DB) ListSessions(cursor SessionCursor, limit int) ([]SessionSummary, *SessionCursor) {
	return db.ListSessionsOf(nil, cursor, limit)
}

// ListSessionsOf is ListSessions over the shards for which only reports
// true (nil: every shard).
func (db *DB) ListSessionsOf(only func(shard int) bool, cursor SessionCursor, limit int) ([]SessionSummary, *SessionCursor) {
	if limit <= 0 {
		limit = 100
	}
	now := db.opts.Now().UnixMicro()
	var out []SessionSummary
	for shard := max(cursor.Shard, 0); shard < len(db.shards); shard++ {
		if only != nil && !only(shard) {
			continue
		}
		s := db.shards[shard]
		s.mu.RLock()
		ids := make([]string, 0, len(s.mu.st.sessions))
		for cid, ss := range s.mu.st.sessions {
			if sessionExpired(ss.rec, now) {
				continue
			}
			if shard == cursor.Shard && cursor.Started && cid <= cursor.After {
				continue
			}
			ids = append(ids, cid)
		}
		slices.Sort(ids)
		for _, cid := range ids {
			if len(out) == limit {
				s.mu.RUnlock()
				last := out[len(out)-1]
				return out, &SessionCursor{Shard: last.Shard, After: last.Record.ClientId, Started: true}
			}
			ss := s.mu.st.sessions[cid]
			out = append(out, SessionSummary{Shard: shard, Record: proto.CloneOf(ss.rec), Subscriptions: len(ss.subs), Streams: len(ss.streams)})
		}
		s.mu.RUnlock()
	}
	return out, nil
}

// GatewayEpoch names one registration of a gateway.
type GatewayEpoch struct {
	GatewayID string
	Epoch     uint64
}

// ConnectedGatewayEpochs returns the owners of the connected sessions, in
// (gateway id, epoch) order, each once: the epochs dsd must watch after a
// start (dsd/server's leases).
func (db *DB) ConnectedGatewayEpochs() []GatewayEpoch {
	seen := map[GatewayEpoch]bool{}
	for _, s := range db.shards {
		s.mu.RLock()
		for _, ss := range s.mu.st.sessions {
			if ss.rec.Connected {
				seen[GatewayEpoch{GatewayID: ss.rec.OwnerGatewayId, Epoch: ss.rec.OwnerEpoch}] = true
			}
		}
		s.mu.RUnlock()
	}
	out := slices.Collect(maps.Keys(seen))
	slices.SortFunc(out, func(a, b GatewayEpoch) int {
		if c := strings.Compare(a.GatewayID, b.GatewayID); c != 0 {
			return c
		}
		return cmp.Compare(a.Epoch, b.Epoch)
	})
	return out
}

// EndGatewayEpoch records the abnormal end of every connection of a dead
// gateway epoch (its lease expired): each session still owned by that epoch
// and connected is disconnected at now, its will armed (or fired, when due
// at once or the session ends), as one command per shard. Sessions another
// epoch opened since are untouched. It returns the connections ended.
func (db *DB) EndGatewayEpoch(ctx context.Context, gatewayID string, epoch uint64) (int, error) {
	if err := db.failErr(); err != nil {
		return 0, err
	}
	n := 0
	watermark := slices.Max(db.Watermarks())
	for _, s := range db.shards {
		if s.ledElsewhere() {
			continue // a replicated shard this site does not lead: its leader's work
		}
		rep, err := s.do(ctx, &request{kind: reqSession, mkCmd: func(now int64) command {
			return cmdEndGatewayEpoch{nowUs: now, gatewayID: gatewayID, epoch: epoch, watermarkUs: watermark}
		}})
		if err == nil {
			err = rep.err
		}
		if err != nil {
			return n, err
		}
		n += rep.sess.epochEnded
	}
	return n, nil
}
