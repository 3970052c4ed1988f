package session

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MemBackend is a Backend that keeps sessions in memory, for a gateway
// without dsd's SessionService and for tests. It implements the rules the
// real one has (ARCHITECTURE.md section 6): a guard per open from one counter
// that never repeats, takeover kicks the previous connection, a session of
// another user name is refused unless cross-identity takeover is allowed, a
// session past its expiry is absent, and a stale guard changes nothing.
// Wills are recorded, not published.
type MemBackend struct {
	kick               func(clientID string, guard uint64)
	allowCrossIdentity bool

	mu struct {
		sync.Mutex
		lastGuard uint64
		sessions  map[string]*memSession
		// wills counts the wills that a real backend would have published.
		wills int
		// opens counts Opens since the last sweep of expired sessions.
		opens int
		// completions wait for the goroutine that calls Submit's done
		// functions, in order; draining says it is running.
		completions []memCompletion
		draining    bool
	}
}

type memCompletion struct {
	done func(error)
	err  error
}

type memSession struct {
	username       string
	guard          uint64
	connected      bool
	expiry         uint32
	disconnectedAt time.Time
	// held are the QoS 2 packet ids stored and not released.
	held map[uint16]bool
}

// NewMemBackend returns an empty MemBackend. kick is called, without locks
// held, when a session held by a connection is taken over; it may be nil.
func NewMemBackend(kick func(clientID string, guard uint64), allowCrossIdentityTakeover bool) *MemBackend {
	b := &MemBackend{kick: kick, allowCrossIdentity: allowCrossIdentityTakeover}
	b.mu.sessions = make(map[string]*memSession)
	return b
}

// memSweepEvery is how many Opens pass between sweeps of expired sessions,
// so the sweep costs O(1) per Open amortised.
const memSweepEvery = 1024

func (s *memSession) expired(now time.Time) bool {
	return !s.connected && !now.Before(s.disconnectedAt.Add(time.Duration(s.expiry)*time.Second))
}

func (b *MemBackend) sweepLocked(now time.Time) {
	b.mu.opens = 0
	for id, s := range b.mu.sessions {
		if s.expired(now) {
			delete(b.mu.sessions, id)
		}
	}
}

// Open implements Backend.
func (b *MemBackend) Open(ctx context.Context, req OpenRequest) (OpenResult, error) {
	if err := ctx.Err(); err != nil {
		return OpenResult{}, err
	}
	b.mu.Lock()
	if b.mu.opens++; b.mu.opens >= memSweepEvery {
		b.sweepLocked(req.Now)
	}
	s := b.mu.sessions[req.ClientID]
	if s != nil && s.expired(req.Now) {
		s = nil // expired: absent
	}
	if s != nil && s.username != req.Username && !b.allowCrossIdentity {
		b.mu.Unlock()
		return OpenResult{}, fmt.Errorf("%w: %q", ErrIdentityMismatch, req.ClientID)
	}
	var kickGuard uint64
	if s != nil && s.connected {
		kickGuard = s.guard
	}
	present := s != nil && !req.CleanStart
	b.mu.lastGuard++
	guard := b.mu.lastGuard
	ns := &memSession{username: req.Username, guard: guard, connected: true, expiry: req.Expiry}
	if present {
		ns.held = s.held // held QoS 2 ids belong to the session
	}
	b.mu.sessions[req.ClientID] = ns
	b.mu.Unlock()
	if kickGuard != 0 && b.kick != nil {
		b.kick(req.ClientID, kickGuard)
	}
	return OpenResult{SessionPresent: present, Guard: guard}, nil
}

// Disconnect implements Backend.
func (b *MemBackend) Disconnect(ctx context.Context, req DisconnectRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.mu.sessions[req.ClientID]
	if s == nil || s.guard != req.Guard {
		return ErrStaleGuard
	}
	if req.Will {
		b.mu.wills++
	}
	if req.Expiry == 0 {
		delete(b.mu.sessions, req.ClientID)
		return nil
	}
	s.connected = false
	s.expiry = req.Expiry
	s.disconnectedAt = req.Now
	return nil
}

// Sessions returns the number of sessions kept (connected or not, expired
// ones included until they are opened again).
func (b *MemBackend) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.mu.sessions)
}

// Submit implements Storage: it keeps nothing but the held QoS 2 packet
// ids (the messages are discarded), and refuses a stale guard. The results
// are handed to done in order by one goroutine, which ends when none wait.
func (b *MemBackend) Submit(req StoreRequest, done func(error)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.completions = append(b.mu.completions, memCompletion{done: done, err: b.storeLocked(req)})
	if !b.mu.draining {
		b.mu.draining = true
		go b.drainCompletions()
	}
}

func (b *MemBackend) drainCompletions() {
	for {
		b.mu.Lock()
		cs := b.mu.completions
		b.mu.completions = nil
		if len(cs) == 0 {
			b.mu.draining = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, c := range cs {
			c.done(c.err)
		}
	}
}

func (b *MemBackend) storeLocked(req StoreRequest) error {
	s := b.mu.sessions[req.ClientID]
	if s == nil || s.guard != req.Guard {
		return ErrStaleGuard
	}
	for _, id := range req.QoS2PacketIDs {
		if id == 0 {
			continue
		}
		if s.held == nil {
			s.held = make(map[uint16]bool)
		}
		s.held[id] = true
	}
	return nil
}

// Release implements Storage.
func (b *MemBackend) Release(ctx context.Context, req ReleaseRequest) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.mu.sessions[req.ClientID]
	if s == nil || s.guard != req.Guard {
		return false, ErrStaleGuard
	}
	released := s.held[req.PacketID]
	delete(s.held, req.PacketID)
	return released, nil
}

// Wills returns how many wills a real backend would have published.
func (b *MemBackend) Wills() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.wills
}
