package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/stratamq/strata/dsd/storage"
)

// Leases (ARCHITECTURE.md §6, docs/gateway-link.md "Leases"): dsd declares
// a gateway epoch dead after leaseIntervals heartbeat intervals without a
// request on its link, counted only while dsd runs. At start every epoch
// that owns a connected session gets a fresh grace, and so does every epoch
// after a stall of dsd itself (the checker's tick came more than an
// interval late). Death ends the connections of the sessions the epoch
// still owns (storage.EndGatewayEpoch: abnormal disconnects, wills armed),
// closes its link if it is still open, and makes dsd refuse a hello with
// that epoch or an older one for the same gateway id.

// leaseIntervals is the number of silent heartbeat intervals after which an
// epoch is dead.
const leaseIntervals = 3

// Errors of the lease, translated by statusFor.
var (
	// errGatewayEpochDead: a hello names an epoch at or below one dsd
	// declared dead for this gateway id; the gateway must pick a new one.
	errGatewayEpochDead = errors.New("dsd: gateway epoch is dead (lease expired); register with a new epoch")
	// errLinkLeaseExpired ends a link whose epoch died.
	errLinkLeaseExpired = errors.New("dsd: gateway lease expired")
)

// epochLease is one watched epoch.
type epochLease struct {
	deadline time.Time
	// kill closes the epoch's link, if one is open.
	kill func()
}

// leases tracks the liveness of gateway epochs.
type leases struct {
	db       *storage.DB
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger
	// replicated, when set and true, makes every check after an interval
	// read the epochs owning connected sessions in this site's replicas
	// (replicatedEpochs).
	replicated func() bool

	mu struct {
		sync.Mutex
		live map[storage.GatewayEpoch]*epochLease
		// dead is, per gateway id, the highest epoch declared dead.
		dead map[string]uint64
		// dying are dead epochs whose sessions are not ended yet (retried
		// at every check after a storage error).
		dying []storage.GatewayEpoch
		// lastCheck is when check last ran (stall detection).
		lastCheck time.Time
		// lastScan is when the replicated sessions were last read.
		lastScan time.Time
	}
}

func newLeases(db *storage.DB, interval time.Duration, now func() time.Time, log *slog.Logger) *leases {
	l := &leases{db: db, interval: interval, now: now, log: log}
	l.mu.live = make(map[storage.GatewayEpoch]*epochLease)
	l.mu.dead = make(map[string]uint64)
	return l
}

// grace is the lease of an epoch heard from at t.
func (l *leases) grace(t time.Time) time.Time { return t.Add(leaseIntervals * l.interval) }

// tickPeriod is how often the checker runs.
func (l *leases) tickPeriod() time.Duration { return max(l.interval/4, time.Millisecond) }

// start gives every epoch that owns a connected session a fresh grace: the
// epochs a previous run of dsd knew.
func (l *leases) start() {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ge := range l.db.ConnectedGatewayEpochs() {
		if ge.GatewayID == "" {
			continue
		}
		if _, ok := l.mu.live[ge]; !ok {
			l.mu.live[ge] = &epochLease{deadline: l.grace(now)}
		}
	}
	l.mu.lastCheck = now
}

// hello registers a link's epoch. It refuses an epoch at or below a dead
// one of the same gateway. release forgets the link (not the lease, which
// runs on until the epoch is heard from again or dies).
func (l *leases) hello(gatewayID string, epoch uint64, kill func()) (release func(), err error) {
	ge := storage.GatewayEpoch{GatewayID: gatewayID, Epoch: epoch}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d, ok := l.mu.dead[gatewayID]; ok && epoch <= d {
		return nil, fmt.Errorf("%w: gateway %q epoch %d (epoch %d is dead)", errGatewayEpochDead, gatewayID, epoch, d)
	}
	e := l.mu.live[ge]
	if e == nil {
		e = &epochLease{}
		l.mu.live[ge] = e
	}
	e.deadline = l.grace(l.now())
	e.kill = kill
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if e := l.mu.live[ge]; e != nil {
			e.kill = nil
		}
	}, nil
}

// heard renews an epoch's lease (a heartbeat or any other request). It
// reports false when the epoch is dead.
func (l *leases) heard(ge storage.GatewayEpoch) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.mu.live[ge]
	if e == nil {
		return false
	}
	e.deadline = l.grace(l.now())
	return true
}

// check runs one lease check at the current time: after a stall every epoch
// gets a fresh grace; epochs past their deadline die. It ends the dying
// epochs' connections in storage and returns the epochs it ended.
func (l *leases) check(ctx context.Context) []storage.GatewayEpoch {
	now := l.now()
	var kills []func()
	l.mu.Lock()
	if late := now.Sub(l.mu.lastCheck) - l.tickPeriod(); !l.mu.lastCheck.IsZero() && late > l.interval {
		// dsd itself stalled (a process pause, an overloaded host): the
		// silence was ours, not the gateways'.
		l.log.Warn("lease checker ran late: every gateway epoch gets a fresh grace", "late", late)
		for _, e := range l.mu.live {
			e.deadline = l.grace(now)
		}
	}
	l.mu.lastCheck = now
	for ge, e := range l.mu.live {
		if now.Before(e.deadline) {
			continue
		}
		delete(l.mu.live, ge)
		if d, ok := l.mu.dead[ge.GatewayID]; !ok || ge.Epoch > d {
			l.mu.dead[ge.GatewayID] = ge.Epoch
		}
		l.mu.dying = append(l.mu.dying, ge)
		if e.kill != nil {
			kills = append(kills, e.kill)
		}
		l.log.Warn("gateway epoch dead: no heartbeat for 3 intervals", "gateway", ge.GatewayID, "epoch", ge.Epoch)
	}
	scan := l.replicated != nil && now.Sub(l.mu.lastScan) >= l.interval
	if scan {
		l.mu.lastScan = now
	}
	l.mu.Unlock()
	if scan && l.replicated() {
		l.replicatedEpochs(now)
	}
	l.mu.Lock()
	dying := l.mu.dying
	l.mu.dying = nil
	l.mu.Unlock()
	for _, kill := range kills {
		kill()
	}
	var ended, retry []storage.GatewayEpoch
	for _, ge := range dying {
		n, err := l.db.EndGatewayEpoch(ctx, ge.GatewayID, ge.Epoch)
		if err != nil {
			l.log.Error("ending a dead gateway epoch's sessions failed; retrying", "gateway", ge.GatewayID, "epoch", ge.Epoch, "err", err)
			retry = append(retry, ge)
			continue
		}
		lvl := slog.LevelInfo
		if n == 0 {
			lvl = slog.LevelDebug // a shard led elsewhere still showed them, or a repeat
		}
		l.log.Log(ctx, lvl, "dead gateway epoch's connections ended", "gateway", ge.GatewayID, "epoch", ge.Epoch, "sessions", n)
		ended = append(ended, ge)
	}
	if len(retry) > 0 {
		l.mu.Lock()
		l.mu.dying = append(l.mu.dying, retry...)
		l.mu.Unlock()
	}
	return ended
}

// replicatedEpochs brings the leases in line with the replicated session
// state of this site's shards, led here or not (docs/replication.md
// "Gateway leases across sites"): a gateway keeps its lease with every
// site, so every site tracks its epochs, but a site ends a dead epoch's
// sessions only in the shards it leads when it runs EndGatewayEpoch. So
// an epoch declared dead here whose sessions are still connected in some
// shard (led elsewhere then, maybe led here now) is ended again, until
// the shards' leaders have ended them all; and an epoch that owns
// connected sessions and is neither live nor dead here (this site never
// heard from it: it was down, or the gateway could not reach it) gets a
// fresh grace, as at start, so it dies here too if it is not heard from.
func (l *leases) replicatedEpochs(now time.Time) {
	epochs := l.db.ConnectedGatewayEpochs()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ge := range epochs {
		if ge.GatewayID == "" {
			continue
		}
		if _, ok := l.mu.live[ge]; ok {
			continue
		}
		if d, ok := l.mu.dead[ge.GatewayID]; ok && ge.Epoch <= d {
			if !slices.Contains(l.mu.dying, ge) {
				l.mu.dying = append(l.mu.dying, ge)
			}
			continue
		}
		l.mu.live[ge] = &epochLease{deadline: l.grace(now)}
	}
}

// run checks the leases every tickPeriod until ctx ends.
func (l *leases) run(ctx context.Context) {
	l.start()
	t := time.NewTicker(l.tickPeriod())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.check(ctx)
		}
	}
}
