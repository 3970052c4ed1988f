package session

import (
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// committer batches the session's changes into Commit actions, one in
// flight at a time (ARCHITECTURE.md section 6, "Commits"): a change that
// gates a send (a batch record, rec before PUBREL, a subscription before
// SUBACK) asks for a commit at once; acknowledgement progress waits for the
// checkpoint every Config.CheckpointInterval and the end of the connection.
type committer struct {
	seq uint64
	// inflight is the Seq of the Commit in flight, 0 when none.
	inflight uint64
	// urgent: a commit is wanted as soon as none is in flight.
	urgent bool
	// lazy: changes wait that gate no send (records of QoS 1 messages
	// already sent, mayPrecedeRecord): committed once
	// Config.RecordCommitDelay passed since the last commit started, at the
	// next event (or the checkpoint), so a busy subscriber commits about
	// every 200 ms instead of once per fsync.
	lazy      bool
	lastStart time.Time
	// after runs once the changes made so far are durable; inflightAfter
	// are those the commit in flight carries.
	after, inflightAfter []func()
	// tracksAt are the tracks the commit in flight carries.
	inflightCommitted [2]uint64
	inflightRec       uint64
	// inflightReserved is the QoS 1 seqno reservation the commit in flight
	// carries (track.durableReserved).
	inflightReserved uint64
	// inflightStates are the state versions the commit in flight puts.
	inflightStates []uint64

	putSubs    map[uint64]*storagev1.Subscription
	delSubs    map[uint64]bool
	putStreams map[*stream]bool
	delStreams []*storagev1.StreamKey
	putRet     map[*retainedBatch]bool
	delRet     []*storagev1.RetainedBatchKey
	// dirty: anything at all changed since the last commit (tracks too).
	dirty bool
	// failed: a commit failed, so nothing more may be committed.
	failed bool

	nextCheckpoint time.Time
}

func (c *committer) reset() {
	c.putSubs, c.delSubs, c.putStreams, c.putRet = nil, nil, nil, nil
	c.delStreams, c.delRet = nil, nil
	c.dirty = false
}

// durably runs f once every change made so far is committed: at once for a
// session that is not durable. The commit starts as soon as none is in
// flight (urgent), or, for a change that gates no send (lazy), up to
// Config.RecordCommitDelay later.
func (m *Machine) durably(f func(), lazy bool) {
	if !m.d.durable {
		f()
		return
	}
	m.d.c.after = append(m.d.c.after, f)
	if lazy {
		m.d.c.lazy = true
	} else {
		m.d.c.urgent = true
	}
	m.maybeCommit()
}

func (m *Machine) touchStream(st *stream) {
	put(&m.d.c.putStreams, st, true)
	m.d.c.dirty = true
}

func (m *Machine) touchSub(s *sub) {
	put(&m.d.c.putSubs, s.rec.Id, s.rec)
	delete(m.d.c.delSubs, s.rec.Id)
	m.d.c.dirty = true
}

// maybeCommit starts a commit when one is wanted and none is in flight.
func (m *Machine) maybeCommit() {
	c := &m.d.c
	if !m.d.durable || c.inflight != 0 || m.state != stateConnected {
		return
	}
	if c.urgent || c.lazy && !m.now.Before(c.lastStart.Add(m.cfg.RecordCommitDelay)) {
		m.startCommit()
	}
}

func (m *Machine) startCommit() {
	c := &m.d.c
	cm := &storagev1.SessionCommit{
		ClientId: m.req.ClientID,
		Guard:    m.guard,
		Seqnos:   seqnoTracks(m.d.t1, m.d.t2),
	}
	lastID, missed := m.d.lastID, m.d.missed
	cm.LastId, cm.MissedMessages = &lastID, &missed
	for id := range c.delSubs {
		cm.DeleteSubscriptions = append(cm.DeleteSubscriptions, id)
	}
	for _, s := range c.putSubs {
		// A copy: the driver marshals the commit while the machine goes on
		// changing the record (current state, generations).
		cm.PutSubscriptions = append(cm.PutSubscriptions, proto.CloneOf(s))
	}
	for st := range c.putStreams {
		if !st.gone {
			cm.PutStreams = append(cm.PutStreams, st.ringRecord())
			for _, b := range st.ring {
				b.sealed = true // the commit holds its record from now on
			}
		}
	}
	cm.DeleteStreams = c.delStreams
	for rb := range c.putRet {
		if !rb.gone {
			cm.PutRetained = append(cm.PutRetained, rb.rec)
		}
	}
	cm.DeleteRetained = c.delRet
	// A state version a new record refers to must be in the commit (or
	// already stored): put every state in use by what this commit puts.
	for _, s := range cm.PutSubscriptions {
		m.putStateIfNew(cm, s.CurrentState)
	}
	for _, r := range cm.PutStreams {
		for _, b := range r.Batches {
			m.putStateIfNew(cm, b.SubState)
		}
	}
	for _, r := range cm.PutRetained {
		m.putStateIfNew(cm, r.SubState)
	}
	c.seq++
	c.inflight = c.seq
	c.inflightAfter, c.after = c.after, nil
	c.inflightCommitted = [2]uint64{m.d.t1.committed, m.d.t2.committed}
	c.inflightRec = m.d.t2.rec
	// Reserve QoS 1 seqnos ahead of the numbering: stored as the track's
	// next, so that a resume numbers above them.
	c.inflightReserved = m.d.t1.next + reserveAhead
	cm.Seqnos.NextQos1 = max(cm.Seqnos.NextQos1, c.inflightReserved)
	c.inflightStates = c.inflightStates[:0]
	for _, v := range cm.PutStates {
		c.inflightStates = append(c.inflightStates, v.Id)
	}
	c.urgent, c.lazy = false, false
	c.lastStart = m.now
	c.reset()
	m.out = append(m.out, Commit{Seq: c.seq, Commit: cm})
}

// putStateIfNew adds state version id to cm unless it is stored already.
func (m *Machine) putStateIfNew(cm *storagev1.SessionCommit, id uint64) {
	v, ok := m.d.states[id]
	if !ok || m.d.storedStates[id] {
		return
	}
	for _, p := range cm.PutStates {
		if p.Id == id {
			return
		}
	}
	cm.PutStates = append(cm.PutStates, v)
}

// CommitDone takes the driver's answer to a Commit action. A failed commit
// closes the connection: what the machine holds is then ahead of dsd, and
// the client resumes from what dsd has.
func (m *Machine) CommitDone(now time.Time, seq uint64, err error) []Action {
	c := &m.d.c
	if seq != c.inflight || c.inflight == 0 {
		return m.flush()
	}
	c.inflight = 0
	if err != nil {
		// Its changes are lost (the next commits carry only what changed
		// since it): what the machine holds is ahead of dsd from now on,
		// also for FinalCommit, which the driver makes after this answer.
		c.failed = true
		m.backendFailed(err)
		return m.flush()
	}
	if m.state == stateClosed {
		return m.flush()
	}
	m.d.t1.durableCommitted = max(m.d.t1.durableCommitted, c.inflightCommitted[0])
	m.d.t2.durableCommitted = max(m.d.t2.durableCommitted, c.inflightCommitted[1])
	m.d.t2.durableRec = max(m.d.t2.durableRec, c.inflightRec)
	m.d.t1.durableReserved = max(m.d.t1.durableReserved, c.inflightReserved)
	// Only the versions this commit put are stored now: one made while it
	// was in flight must go out with a later one.
	for _, id := range c.inflightStates {
		put(&m.d.storedStates, id, true)
	}
	after := c.inflightAfter
	c.inflightAfter = nil
	for _, f := range after {
		f()
	}
	m.sendPubrels()
	m.pump()
	m.maybeCommit()
	return m.flush()
}

// backendFailed closes the connection after dsd refused or failed a call
// the session cannot go on without.
func (m *Machine) backendFailed(err error) {
	if errors.Is(err, ErrStaleGuard) {
		m.abort(ReasonTakenOver, packet.SessionTakenOver)
		return
	}
	if errors.Is(err, ErrQuotaExceeded) {
		// dsd holds as many entries for this gateway as it allows
		// (durable_sessions.max_link_entries): a delivery the session
		// needs could not start. The SUBACK went out before the entries
		// were added, so the answer is the connection's end, with the
		// reason code that says why.
		m.abort(ReasonBackendError, packet.QuotaExceeded)
		return
	}
	m.abort(ReasonBackendError, packet.UnspecifiedError)
}

// checkpoint commits acknowledgement progress every CheckpointInterval.
func (m *Machine) checkpoint(now time.Time) {
	c := &m.d.c
	if !m.d.durable || c.nextCheckpoint.IsZero() || now.Before(c.nextCheckpoint) {
		return
	}
	c.nextCheckpoint = now.Add(m.cfg.CheckpointInterval)
	if c.dirty || m.d.t1.committed != m.d.t1.durableCommitted || m.d.t2.committed != m.d.t2.durableCommitted {
		c.urgent = true
		m.maybeCommit()
	}
}

// FinalCommit returns the commit that makes the session's progress durable
// when the connection ends, or nil when there is nothing to commit (or a
// commit failed). The driver carries it out before ending the session,
// after the answer to the Commit in flight, if any.
func (m *Machine) FinalCommit() *storagev1.SessionCommit {
	switch {
	case !m.d.durable, m.guard == 0, m.d.t1 == nil,
		m.closeReason == ReasonTakenOver, m.closeReason == ReasonLeaseLost,
		// A commit failed, or its answer is unknown: this one would carry
		// the seqno tracks without that commit's changes (a subscription
		// deleted, its queued messages released), and a resume would skip
		// messages dsd still has to deliver.
		m.d.c.failed, m.d.c.inflight != 0:
		return nil
	}
	before := len(m.out)
	m.startCommit()
	cm := m.out[len(m.out)-1].(Commit).Commit
	m.out = m.out[:before]
	m.d.c.inflight = 0
	return cm
}
