package dsdbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// errLeaseExpired: no heartbeat was acknowledged for two intervals.
var errLeaseExpired = errors.New("dsdbackend: lease expired")

// LeaseOptions configure a Lease.
type LeaseOptions struct {
	// Client is the connection to dsd (one site).
	Client *client.Client
	// Pool, when set, replaces Client: the lease is kept with every site
	// of the pool's table, one link each, under one epoch.
	Pool *Pool
	// GatewayID names this gateway in every hello (docs/gateway.md).
	GatewayID string
	// Interval is durable_sessions.gateway_heartbeat_interval: a heartbeat
	// goes out every Interval; the lease is lost when none was
	// acknowledged for 2 × Interval (dsd holds it for 3). Default: the
	// config's default (DefaultLeaseInterval).
	Interval time.Duration
	// Router, when set, carries the connections' Watch and Read entries
	// over the lease's link.
	Router *Router
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// DefaultLeaseInterval is LeaseOptions.Interval's default: the default of
// durable_sessions.gateway_heartbeat_interval, from package config (2 s).
var DefaultLeaseInterval = config.Default().DurableSessions.GatewayHeartbeatInterval.Std()

// Handlers are the gateway's side of a Lease.
type Handlers struct {
	// Kick closes the connection holding clientID's session with guard
	// (server.Server.Kick). It must not block.
	Kick func(clientID string, guard uint64)
	// Lost closes every MQTT connection, abnormally (server.Server.LeaseLost).
	Lost func()
}

// Lease is the gateway's registration with dsd. One goroutine, started by
// Start and ended by Close, keeps it, with one more per site while it is
// held:
//
//  1. register: with a Pool, read the sites and the shards' leaders; a new
//     epoch (unix nanoseconds, above every earlier one of the process), a
//     GatewayLink with hello{gateway id, epoch} to every site; the
//     welcomes are the first acknowledgements (every site that leads a
//     shard must answer);
//  2. hold, per site: route kicks, send a heartbeat every quarter interval, renew
//     the site's lease from each acknowledged one; a broken link is opened
//     again with the same epoch (no CONNECT is accepted meanwhile while the
//     site leads a shard);
//  3. when nothing renewed the lease with a site that leads a shard for 2
//     intervals, or a site declared the epoch dead: Handlers.Lost, and
//     back to 1 with backoff. A site that leads no shard may stay
//     unreachable.
//
// It implements Registrar for the Backend.
type Lease struct {
	opts LeaseOptions
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	// done is closed when the goroutine has returned (by Close when it
	// never started).
	done      chan struct{}
	startOnce sync.Once
	// registered is closed at the first registration.
	registered     chan struct{}
	registeredOnce sync.Once

	mu struct {
		sync.Mutex
		// reg is the registration holding the lease, nil without one.
		reg *registration
		// down are the sites whose link is not open (being reopened).
		down map[string]bool
		// lastEpoch is the latest epoch used, so epochs always grow.
		lastEpoch uint64
		// err says why there is no usable registration.
		err error
	}
}

type registration struct {
	epoch  uint64
	ctx    context.Context
	cancel context.CancelFunc
}

// NewLease returns a Lease that does nothing until Start: Current fails
// until the first registration. opts must pass Validate after
// EnsureDefaults.
func NewLease(opts LeaseOptions) *Lease {
	opts.EnsureDefaults()
	mustBeValid(opts.Validate())
	l := &Lease{opts: opts, log: opts.Logger.With("component", "dsd_lease", "gateway_id", opts.GatewayID),
		done: make(chan struct{}), registered: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.mu.err = errors.New("not registered yet")
	l.mu.down = map[string]bool{}
	return l
}

// Start starts keeping the lease; kicks and lease losses go to h. Call it
// once, after the server that h names is listening.
func (l *Lease) Start(h Handlers) {
	l.startOnce.Do(func() { go l.run(h) })
}

// Close ends the registration (closing the link) and waits for the
// goroutine. Handlers.Lost is not called.
func (l *Lease) Close() error {
	if l.opts.Router != nil {
		l.opts.Router.stop()
	}
	l.cancel()
	l.startOnce.Do(func() { close(l.done) }) // never started: nothing runs
	<-l.done
	return nil
}

// WaitRegistered waits for the first registration, or ctx.
func (l *Lease) WaitRegistered(ctx context.Context) error {
	select {
	case <-l.registered:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Current implements Registrar.
func (l *Lease) Current() (Registration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.reg == nil || !l.linkUpLocked() {
		return Registration{}, fmt.Errorf("%w: %w: %v", session.ErrUnavailable, errNotRegistered, l.mu.err) // lint:nowrap the last link error is detail (and may be nil); callers classify by ErrUnavailable
	}
	return Registration{GatewayID: l.opts.GatewayID, Epoch: l.mu.reg.epoch, Ended: l.mu.reg.ctx}, nil
}

// Held implements Registrar.
func (l *Lease) Held() (Registration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.reg == nil {
		return Registration{}, fmt.Errorf("%w: %w: %v", session.ErrUnavailable, errNotRegistered, l.mu.err) // lint:nowrap the last link error is detail (and may be nil); callers classify by ErrUnavailable
	}
	return Registration{GatewayID: l.opts.GatewayID, Epoch: l.mu.reg.epoch, Ended: l.mu.reg.ctx}, nil
}

// Ready is the /readyz check: nil while the gateway holds its lease with a
// live link.
func (l *Lease) Ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.reg == nil || !l.linkUpLocked() {
		return fmt.Errorf("no lease with dsd: %v", l.mu.err) // lint:nowrap the last link error may be nil, and /readyz only prints it
	}
	return nil
}

// linkUpLocked reports whether the links that matter are open: dsd could
// tell the gateway about a takeover. With a pool, those of the sites that
// lead a shard (a site that leads none sends no kick).
func (l *Lease) linkUpLocked() bool {
	for site := range l.mu.down {
		if l.leads(site) {
			return false
		}
	}
	return true
}

// Epoch returns the epoch holding the lease, 0 without one.
func (l *Lease) Epoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.reg == nil {
		return 0
	}
	return l.mu.reg.epoch
}

func (l *Lease) run(h Handlers) {
	defer close(l.done)
	bo := newBackoff(l.opts.Interval)
	failing := false
	for l.ctx.Err() == nil {
		epoch := l.nextEpoch()
		links, err := l.openAll(epoch)
		if err != nil {
			l.setErr(err)
			if !failing {
				l.log.Warn("cannot register with dsd; CONNECTs are refused (0x88) until it answers", "epoch", epoch, "err", err)
				failing = true
			}
			if !l.wait(bo.next()) {
				return
			}
			continue
		}
		failing = false
		bo.reset()
		// The version first: once registered, the gateway opens its
		// listeners and says it is ready, after this line.
		version := l.dsdVersion()
		if r := l.opts.Router; r != nil {
			r.reset()
		}
		reg := l.register(epoch)
		attrs := []any{"epoch", epoch, "dsd_version", version}
		for site, o := range links {
			if o.link != nil {
				attrs = append(attrs, "site", o.link.Welcome.GetSite())
			} else if site != "" {
				attrs = append(attrs, "site_unreachable", site)
			}
		}
		l.log.Info("registered with dsd", attrs...)
		err = l.hold(reg, links, h)
		l.unregister(reg, err)
		if l.ctx.Err() != nil {
			return
		}
		l.log.Warn("lost the lease with dsd; closing every MQTT connection", "epoch", epoch, "err", err)
		h.Lost()
	}
}

// opened is one site's link at registration: nil when it did not open
// (a site that leads no shard may be down).
type opened struct {
	link   *client.Link
	cancel context.CancelFunc
	sent   time.Time
}

// sites are the sites to keep the lease with: every site of the pool's
// table, or the one dsd ("").
func (l *Lease) sites() []string {
	if l.opts.Pool == nil {
		return []string{""}
	}
	return l.opts.Pool.Table().Sites
}

// leads reports whether site leads a shard (or is the one dsd).
func (l *Lease) leads(site string) bool {
	return l.opts.Pool == nil || l.opts.Pool.Table().LeadsAny(site)
}

func (l *Lease) client(site string) *client.Client {
	if l.opts.Pool == nil {
		return l.opts.Client
	}
	return l.opts.Pool.conn(site)
}

// openAll registers epoch with every site: with a pool, after learning
// the sites and the shards' leaders. It fails unless the link of every
// site that leads a shard opened.
func (l *Lease) openAll(epoch uint64) (map[string]opened, error) {
	if p := l.opts.Pool; p != nil {
		ctx, cancel := context.WithTimeout(l.ctx, l.opts.Interval)
		err := p.Refresh(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	sites := l.sites()
	out := make(map[string]opened, len(sites))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, site := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now()
			link, cancel, err := l.open(site, epoch, l.opts.Interval)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if l.leads(site) || isEpochDead(err) {
					errs = append(errs, fmt.Errorf("site %s: %w", site, err))
				}
				out[site] = opened{sent: sent}
				return
			}
			out[site] = opened{link: link, cancel: cancel, sent: sent}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		for _, o := range out {
			if o.link != nil {
				_ = o.link.Close()
				o.cancel()
			}
		}
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// isEpochDead: a site declared the epoch dead (it may have ended its
// sessions): the gateway registers a new one.
func isEpochDead(err error) bool {
	return status.Code(err) == codes.FailedPrecondition
}

// dsdVersion asks dsd for its build version, for the registration log
// line: "unknown" when dsd predates the field or does not answer within a
// quarter of the heartbeat interval (the lease is already held meanwhile).
func (l *Lease) dsdVersion() string {
	c := l.opts.Client
	if l.opts.Pool != nil {
		c = l.opts.Pool.conn(l.opts.Pool.Table().Default)
	}
	if c == nil {
		return "unknown"
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.Interval/4)
	defer cancel()
	info, err := c.Storage.Info(ctx, &dsdv1.InfoRequest{})
	if err != nil || info.GetVersion() == "" {
		return "unknown"
	}
	return info.GetVersion()
}

// open opens a GatewayLink to site for epoch, waiting at most within for
// the welcome. The link lives until cancel (or Close of the Lease).
func (l *Lease) open(site string, epoch uint64, within time.Duration) (*client.Link, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(l.ctx)
	timer := time.AfterFunc(within, cancel)
	link, err := l.client(site).OpenLink(ctx, l.opts.GatewayID, epoch)
	if !timer.Stop() && err == nil {
		// The welcome came as the timer fired: the stream is cancelled.
		err = fmt.Errorf("dsdbackend: no welcome within %v", within)
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return link, cancel, nil
}

// hold keeps the lease of reg with every site, one goroutine each, until
// it is lost (or the Lease closes). With a pool, sites that appear in the
// table later get theirs too.
func (l *Lease) hold(reg *registration, links map[string]opened, h Handlers) error {
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below
	ctx, cancel := context.WithCancel(reg.ctx)
	defer cancel()
	lost := make(chan error, 1)
	started := map[string]bool{}
	start := func(site string, o opened) {
		started[site] = true
		if o.link == nil {
			l.setLinkDown(site, errors.New("link not opened yet"))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.holdSite(ctx, reg, site, o, h); err != nil {
				select {
				case lost <- err:
				default:
				}
			}
		}()
	}
	for site, o := range links {
		start(site, o)
	}
	var changed <-chan struct{}
	if l.opts.Pool != nil {
		changed = l.opts.Pool.Changed()
	}
	for {
		select {
		case err := <-lost:
			return err
		case <-l.ctx.Done():
			return l.ctx.Err()
		case <-changed:
			changed = l.opts.Pool.Changed()
			if r := l.opts.Router; r != nil {
				r.retarget()
			}
			for _, site := range l.sites() {
				if !started[site] {
					start(site, opened{sent: time.Now()})
				}
			}
		}
	}
}

// holdSite keeps reg's link with site: it serves the link, reopens it
// with the same epoch when it breaks, and returns (lost) when no
// heartbeat was acknowledged for 2 intervals while the site leads a
// shard, or when the site declared the epoch dead. A site that leads no
// shard may stay unreachable: it ends none of the epoch's sessions.
func (l *Lease) holdSite(ctx context.Context, reg *registration, site string, o opened, h Handlers) error {
	link, cancelLink, lastAck := o.link, o.cancel, o.sent
	iv := l.opts.Interval
	for {
		if link != nil {
			l.setLinkUp(site)
			var err error
			iv = l.interval(link)
			lastAck, err = l.serve(ctx, site, link, lastAck, iv, h)
			_ = link.Close()
			cancelLink()
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errLeaseExpired) && l.leads(site) {
				return err
			}
			l.setLinkDown(site, err)
			l.log.Warn("link to dsd broken; reopening it with the same epoch", "site", site, "epoch", reg.epoch, "err", err)
			if l.opts.Pool != nil {
				l.opts.Pool.Stale()
			}
		}
		var err error
		link, cancelLink, lastAck, err = l.reopen(ctx, site, reg.epoch, lastAck, iv)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		l.log.Info("link to dsd reopened", "site", site, "epoch", reg.epoch)
	}
}

// reopen opens epoch's link with site again before the lease expires (at
// any time while the site leads no shard; within 2 intervals of when it
// came to lead one).
func (l *Lease) reopen(ctx context.Context, site string, epoch uint64, lastAck time.Time, iv time.Duration) (*client.Link, context.CancelFunc, time.Time, error) {
	bo := newBackoff(iv)
	// from is when the 2 intervals run from: the last acknowledged
	// heartbeat, or when the site came to lead a shard while its link was
	// down (a restarted site elected: it answers within an interval).
	from := lastAck
	wasLeading := l.leads(site)
	for {
		leads := l.leads(site)
		if leads && !wasLeading {
			from = time.Now()
		}
		wasLeading = leads
		deadline := from.Add(2 * iv)
		left := time.Until(deadline)
		if ctx.Err() != nil {
			return nil, nil, lastAck, ctx.Err()
		}
		if leads && left <= 0 {
			return nil, nil, lastAck, fmt.Errorf("%w: link to %s not reopened", errLeaseExpired, site)
		}
		within := iv
		if leads {
			within = min(left, iv)
		}
		sent := time.Now()
		link, cancel, err := l.open(site, epoch, within)
		if err == nil {
			return link, cancel, sent, nil
		}
		if isEpochDead(err) {
			return nil, nil, lastAck, fmt.Errorf("site %s: %w", site, err)
		}
		l.setLinkDown(site, err)
		wait := bo.next()
		if leads {
			wait = min(wait, time.Until(deadline))
		}
		var changed <-chan struct{}
		if l.opts.Pool != nil {
			changed = l.opts.Pool.Changed()
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-t.C:
		case <-changed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return nil, nil, lastAck, ctx.Err()
		}
	}
}

// beat is one heartbeat to send, or the failure of its send.
type beat struct {
	seq  uint64
	sent time.Time
	err  error
}

// Heartbeats go out every interval / beatsPerInterval, up to beatsInFlight
// queued behind a slow send. The lease runs 2 intervals from the sending
// of the latest acknowledged one: sending often keeps that close to now
// when the link is slow. Under a storm of a thousand connections a send
// waited 1.2 s for the link's stream and its acknowledgement another
// second; one heartbeat per interval, one in flight, then let the lease run
// out (benchcmp fanout1k) while dsd had heard the gateway all along. dsd
// holds the lease 3 intervals from the last request it received, so a
// heartbeat acknowledged is proof enough, however many there are.
const (
	beatsPerInterval = 4
	beatsInFlight    = 4
)

// serve runs one open link: it routes kicks, sends a heartbeat every
// quarter interval and renews the lease from each acknowledged one. It returns the
// renewed lastAck and why it stopped: the link broke, the lease expired or
// the Lease closed. Its goroutines have ended when it returns.
func (l *Lease) serve(pctx context.Context, site string, link *client.Link, lastAck time.Time, iv time.Duration, h Handlers) (time.Time, error) {
	ctx, cancel := context.WithCancel(pctx)
	var wg sync.WaitGroup
	broken := make(chan error, 2) // recv and the router's sender each report once
	hbAcks := make(chan uint64, 16)
	toSend := make(chan beat, beatsInFlight)
	failed := make(chan beat, beatsInFlight)
	ticker := time.NewTicker(iv / beatsPerInterval)
	expiry := time.NewTimer(time.Until(lastAck.Add(2 * iv)))
	defer func() {
		cancel()
		_ = link.Close() // ends Recv
		wg.Wait()
		ticker.Stop()
		expiry.Stop()
		// Once the router's sender has stopped: what the owners add again
		// goes on the next link, not on this one.
		if r := l.opts.Router; r != nil {
			r.linkClosed(site)
		}
	}()
	in := newInbox()
	wg.Add(2)
	go func() {
		defer wg.Done()
		broken <- l.recv(ctx, link, in, hbAcks)
	}()
	go func() {
		defer wg.Done()
		l.dispatch(ctx, site, in, h)
	}()
	if r := l.opts.Router; r != nil {
		r.linkOpened(site)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.send(ctx, site, link); err != nil && ctx.Err() == nil {
				select {
				case broken <- err:
				default:
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-toSend:
				if b.err = l.heartbeat(link, b.seq); b.err != nil {
					select {
					case failed <- b:
					default: // a failed send breaks the link: recv reports it
					}
				}
			}
		}
	}()
	renew := func(sent time.Time) {
		if sent.After(lastAck) {
			lastAck = sent
			expiry.Reset(time.Until(lastAck.Add(2 * iv)))
		}
	}
	// pending are heartbeats sent on the link and not acknowledged yet, by
	// seq; a few at most, since the lease ends 2 intervals after the last
	// acknowledged one.
	pending := map[uint64]time.Time{}
	var seq uint64
	for {
		select {
		case <-pctx.Done():
			return lastAck, pctx.Err()
		case err := <-broken:
			return lastAck, err
		case <-expiry.C:
			return lastAck, errLeaseExpired
		case <-ticker.C:
			seq++
			// Pending from before the send: dsd's ack may arrive before
			// the send's own completion is seen here.
			b := beat{seq: seq, sent: time.Now()}
			select {
			case toSend <- b:
				pending[seq] = b.sent
			default: // beatsInFlight queued already: the link is stuck
			}
		case b := <-failed:
			l.log.Debug("heartbeat failed", "seq", b.seq, "err", b.err)
			delete(pending, b.seq)
		case n := <-hbAcks:
			if sent, ok := pending[n]; ok {
				renew(sent)
			}
			for k := range pending {
				if k <= n {
					delete(pending, k)
				}
			}
		}
	}
}

// interval is the heartbeat interval for link: the configured one, or
// dsd's when its welcome names a shorter one (dsd declares the epoch dead
// after 3 of its intervals).
func (l *Lease) interval(link *client.Link) time.Duration {
	iv := l.opts.Interval
	if ms := link.Welcome.GetHeartbeatIntervalMs(); ms > 0 {
		iv = min(iv, time.Duration(ms)*time.Millisecond)
	}
	return iv
}

// heartbeat sends one lease heartbeat on the link; dsd answers with
// HeartbeatAck{seq}, which recv hands to the lease loop.
func (l *Lease) heartbeat(link *client.Link, seq uint64) error {
	return link.Heartbeat(seq)
}

// recv reads the link until it ends: heartbeat acknowledgements go to
// acks at once, everything else to the dispatcher, in order (inbox).
func (l *Lease) recv(ctx context.Context, link *client.Link, in *inbox, acks chan<- uint64) error {
	for {
		resp, err := link.Recv()
		if err != nil {
			return fmt.Errorf("dsdbackend: link: %w", err)
		}
		if a := resp.GetHeartbeatAck(); a != nil {
			select {
			case acks <- a.GetSeq():
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		in.put(resp)
	}
}

func (l *Lease) nextEpoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := uint64(time.Now().UnixNano())
	if e <= l.mu.lastEpoch {
		e = l.mu.lastEpoch + 1
	}
	l.mu.lastEpoch = e
	return e
}

func (l *Lease) register(epoch uint64) *registration {
	ctx, cancel := context.WithCancel(l.ctx)
	reg := &registration{epoch: epoch, ctx: ctx, cancel: cancel}
	l.mu.Lock()
	l.mu.reg, l.mu.err = reg, nil
	clear(l.mu.down)
	l.mu.Unlock()
	l.registeredOnce.Do(func() { close(l.registered) })
	return reg
}

func (l *Lease) unregister(reg *registration, err error) {
	l.mu.Lock()
	if l.mu.reg == reg {
		l.mu.reg, l.mu.err = nil, err
		clear(l.mu.down)
	}
	l.mu.Unlock()
	reg.cancel()
}

func (l *Lease) setLinkDown(site string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.down[site], l.mu.err = true, err
}

func (l *Lease) setLinkUp(site string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.mu.down, site)
	if len(l.mu.down) == 0 {
		l.mu.err = nil
	}
}

func (l *Lease) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.err = err
}

// wait waits d, or until the Lease closes (false).
func (l *Lease) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// backoff doubles from interval/20 (at least 10 ms) up to interval.
type backoff struct{ cur, lo, hi time.Duration }

func newBackoff(interval time.Duration) *backoff {
	lo := max(interval/20, 10*time.Millisecond)
	return &backoff{cur: lo, lo: lo, hi: max(interval, lo)}
}

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.hi)
	return d
}

func (b *backoff) reset() { b.cur = b.lo }
