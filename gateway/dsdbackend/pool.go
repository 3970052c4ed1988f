package dsdbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Refresh pacing of the Pool: every poolRefreshInterval, and every
// poolFastRefresh while the table is not complete (a shard without a
// known leader, or a leader that did not answer) after a refusal or a
// broken stream.
const (
	poolRefreshInterval = 5 * time.Second
	poolFastRefresh     = 100 * time.Millisecond
	poolInfoTimeout     = time.Second
)

// Pool is the gateway's connections to the sites of a dsd cluster and its
// shard → leader table. It starts from the configured addresses (any one
// is enough), learns every site and each shard's leader from dsd's Info,
// and follows leadership changes: a NotLeader refusal naming the new
// leader updates the table at once (Observe), and a refusal without one, a
// broken stream or a site that does not answer asks for a refresh
// (Stale), repeated quickly until every shard has a leader that answers.
//
// With one site (the default deployment) the table names that site for
// every shard, and a call costs one atomic load more than a direct client.
type Pool struct {
	dialOpts []grpc.DialOption
	log      *slog.Logger
	seeds    []string
	table    atomic.Pointer[Table]
	stale    chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	started  atomic.Bool

	// conns are the connections by address, copied on write (a call
	// looks its site's up without a lock).
	conns atomic.Pointer[map[string]*client.Client]

	mu struct {
		sync.Mutex
		// changed is closed (and replaced) when the table changes.
		changed chan struct{}
		// down are the sites that did not answer the last refresh: a
		// refusal naming one of them as the leader is not believed (it
		// comes from a site that has not noticed the leader's death).
		down map[string]bool
	}
}

// NewPool returns a Pool over the sites at addrs (ParseAddrs), dialled
// with opts (as client.Dial takes them). Connections are lazy. Start
// starts its refreshes; Close closes every connection.
func NewPool(addrs []string, log *slog.Logger, opts ...grpc.DialOption) (*Pool, error) {
	if len(addrs) == 0 {
		return nil, errors.New("dsdbackend: pool: no dsd address")
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Pool{dialOpts: opts, log: log.With("component", "dsd_pool"), seeds: slices.Clone(addrs),
		stale: make(chan struct{}, 1), done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.conns.Store(&map[string]*client.Client{})
	p.mu.changed = make(chan struct{})
	sites := slices.Clone(addrs)
	slices.Sort(sites)
	p.table.Store(&Table{Sites: sites, Default: addrs[0]})
	for _, a := range addrs {
		if _, err := p.Client(a); err != nil {
			p.closeConns()
			return nil, err
		}
	}
	return p, nil
}

// Client returns the connection to the site at addr, dialling it the first
// time.
func (p *Pool) Client(addr string) (*client.Client, error) {
	if c := (*p.conns.Load())[addr]; c != nil {
		return c, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.conns.Load()
	if c := old[addr]; c != nil {
		return c, nil
	}
	c, err := client.Dial(addr, p.dialOpts...)
	if err != nil {
		return nil, err
	}
	m := maps.Clone(old)
	m[addr] = c
	p.conns.Store(&m)
	return c, nil
}

// conn is Client for an address the pool dials without error (dialling is
// lazy: an address that does not parse fails at its first call instead).
func (p *Pool) conn(addr string) *client.Client {
	c, err := p.Client(addr)
	if err != nil {
		p.log.Warn("cannot dial a dsd site", "addr", addr, "err", err)
		c, _ = p.Client(p.seeds[0])
	}
	return c
}

// Table returns the current table.
func (p *Pool) Table() *Table { return p.table.Load() }

// Changed returns a channel closed at the next change of the table.
func (p *Pool) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.changed
}

// ForShard is the connection to the leader of shard.
func (p *Pool) ForShard(shard int) *client.Client {
	return p.conn(p.Table().Leader(shard))
}

// ForClient is the connection to the leader of clientID's shard.
func (p *Pool) ForClient(clientID string) *client.Client {
	t := p.Table()
	return p.conn(t.Leader(t.ShardOf(clientID)))
}

// ObserveMessage reads a status message dsd sent (an UNAVAILABLE call, an
// ingest failure or an entry error) for a NotLeader refusal: one naming
// the leader updates the table (true: retry at once); any other refusal
// asks for a refresh (false: retry after a pause).
func (p *Pool) ObserveMessage(msg string) bool {
	r, ok := ParseRefusal(msg)
	if !ok {
		return false
	}
	if a, ok := p.Table().Aliases[r.Leader]; ok {
		r.Leader = a
	}
	p.mu.Lock()
	down := p.mu.down[r.Leader]
	p.mu.Unlock()
	if r.Leader == "" || down {
		p.Stale()
		return false
	}
	p.setTable(func(t *Table) *Table { return t.withLeader(r.Shard, r.Leader) })
	return true
}

// Stale asks for a refresh of the table.
func (p *Pool) Stale() {
	select {
	case p.stale <- struct{}{}:
	default:
	}
}

func (p *Pool) setTable(f func(*Table) *Table) {
	p.mu.Lock()
	old := p.table.Load()
	t := f(old)
	if t == old || t == nil {
		p.mu.Unlock()
		return
	}
	p.table.Store(t)
	close(p.mu.changed)
	p.mu.changed = make(chan struct{})
	p.mu.Unlock()
	p.log.Debug("shard table changed", "sites", t.Sites, "leaders", t.Leaders)
	for _, a := range t.Sites {
		_, _ = p.Client(a)
	}
}

// Refresh asks every known site for its view (Info) and replaces the
// table with their merged answer. It fails when no site answered.
func (p *Pool) Refresh(ctx context.Context) error {
	t := p.Table()
	addrs := slices.Clone(t.Sites)
	for _, s := range p.seeds {
		if !slices.Contains(addrs, s) {
			addrs = append(addrs, s)
		}
	}
	views := make([]siteView, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Client(a)
			if err != nil {
				errs[i] = err
				return
			}
			cctx, cancel := context.WithTimeout(ctx, poolInfoTimeout)
			defer cancel()
			info, err := c.Storage.Info(cctx, &dsdv1.InfoRequest{})
			views[i], errs[i] = siteView{addr: a, info: info}, err
		}()
	}
	wg.Wait()
	asked := map[string]bool{}
	down := map[string]bool{}
	var got []siteView
	for i, a := range addrs {
		asked[a] = true
		if errs[i] == nil {
			got = append(got, views[i])
		} else {
			down[a] = true
		}
	}
	p.mu.Lock()
	p.mu.down = down
	p.mu.Unlock()
	// The table's default site is one that answered, the earliest of the
	// configured order.
	slices.SortStableFunc(got, func(a, b siteView) int {
		return seedRank(p.seeds, a.addr) - seedRank(p.seeds, b.addr)
	})
	nt := buildTable(got, asked)
	if nt == nil {
		return fmt.Errorf("dsdbackend: no dsd site answered: %w", errors.Join(errs...))
	}
	p.setTable(func(old *Table) *Table {
		if slices.Equal(old.Sites, nt.Sites) && slices.Equal(old.Leaders, nt.Leaders) && old.NShards == nt.NShards &&
			old.Default == nt.Default && maps.Equal(old.Aliases, nt.Aliases) {
			return old
		}
		return nt
	})
	return nil
}

func seedRank(seeds []string, a string) int {
	if i := slices.Index(seeds, a); i >= 0 {
		return i
	}
	return len(seeds)
}

// Start refreshes the table in the background until Close: every
// poolRefreshInterval, and quickly after Stale until it is complete.
func (p *Pool) Start() {
	if !p.started.CompareAndSwap(false, true) {
		return
	}
	go p.run()
}

func (p *Pool) run() {
	defer close(p.done)
	t := time.NewTimer(poolRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.stale:
		}
		err := p.Refresh(p.ctx)
		next := poolRefreshInterval
		if err != nil || !p.Table().Complete() {
			next = poolFastRefresh
			if err != nil && p.ctx.Err() == nil {
				p.log.Debug("shard table refresh failed", "err", err)
			}
		}
		t.Reset(next)
	}
}

// Close stops the refreshes and closes every connection.
func (p *Pool) Close() error {
	p.cancel()
	if p.started.Load() {
		<-p.done
	}
	p.closeConns()
	return nil
}

func (p *Pool) closeConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range *p.conns.Load() {
		_ = c.Close()
	}
	p.conns.Store(&map[string]*client.Client{})
}

// RetainedSources groups the shards by the site leading them, for a merged
// retained listing (client.MatchRetainedMerged); nil with one site, which
// reads every shard itself.
func (p *Pool) RetainedSources() []client.RetainedSource {
	t := p.Table()
	if !t.Multi() || t.NShards == 0 {
		return nil
	}
	var sources []client.RetainedSource
	at := map[string]int{}
	for sh := range t.NShards {
		addr := t.Leader(sh)
		i, ok := at[addr]
		if !ok {
			i = len(sources)
			at[addr] = i
			sources = append(sources, client.RetainedSource{Client: p.conn(addr)})
		}
		sources[i].Shards = append(sources[i].Shards, uint32(sh))
	}
	return sources
}
