package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/meta"
	"github.com/stratamq/strata/dsd/raftlog"
	"github.com/stratamq/strata/dsd/sitelink"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// MetaGroup is the raft group id of the metadata group; shard groups will
// take other ids.
const MetaGroup = 0

// Errors of the cluster.
var (
	// ErrNotRunning: the metadata group has not started (a joining site
	// before its Join returned) or has stopped.
	ErrNotRunning = errors.New("cluster: the metadata group is not running")
	// ErrNShardsMismatch: a site with another n_shards tried to join.
	ErrNShardsMismatch = errors.New("cluster: n_shards differs from the cluster's")
	// ErrStopped: the metadata group stopped after it could not persist
	// its raft state (fail-stop, as the storage).
	ErrStopped = errors.New("cluster: the metadata group stopped after a storage error")
	// ErrEntryTooLarge: a replicated shard's command is larger than a raft
	// message between sites may be (Options.MaxEntryBytes).
	ErrEntryTooLarge = errors.New("cluster: the command is too large to replicate")
)

// Options configure a Cluster. Zero durations and counts take the defaults.
type Options struct {
	// Site is this site's id (storage.DB.SiteID); Node its host name.
	Site, Node string
	// Join is the gRPC address of a member to join at the first start
	// (dsd --join); ignored once the site has raft state.
	Join string
	// NShards, NSites and ReplicationFactor are durable_storage.messages.*.
	NShards, NSites, ReplicationFactor int
	// DialOptions are used to dial other sites (TLS between sites).
	DialOptions []grpc.DialOption
	// TickInterval is raft's tick; ElectionTicks and HeartbeatTicks count
	// ticks. Defaults 50ms, 10, 1: a follower campaigns 0.5-1 s after it
	// last heard from its leader (raft randomizes in [ElectionTicks,
	// 2*ElectionTicks)), so writes resume within about 1 s of a leader's
	// crash (1.5-2 s when the first candidate lacks entries); the read
	// lease is half the election timeout (shards.go).
	TickInterval                  time.Duration
	ElectionTicks, HeartbeatTicks int
	// DownAfter is how long the leader hears nothing from a site before it
	// records it down; LivenessInterval how often it looks. Defaults 3s, 250ms.
	DownAfter, LivenessInterval time.Duration
	// SnapshotEntries: a snapshot every this many applied entries, after
	// which the log keeps KeepEntries. Defaults 1000 and 100. A shard
	// group's leader proposes a truncation of the log every
	// SnapshotEntries entries, keeping KeepEntries (shards.go).
	SnapshotEntries, KeepEntries uint64
	// LeaderBalanceAfter: a shard's leader hands its leadership to the
	// shard's preferred replica (leaders.go) once that replica has been
	// heard from without a break for this long, and tries at most once
	// per this long. Default 5s; negative: never.
	LeaderBalanceAfter time.Duration
	// ProposalTimeout bounds a proposal (Join included). Default 5s.
	ProposalTimeout time.Duration
	// MaxEntryBytes bounds a shard group's entry: a raft message carrying
	// it must stay under the other sites' gRPC receive limit. Default 1 MiB.
	MaxEntryBytes int
	// Shards, when set, is the site's storage: every replicated shard
	// this site holds runs a raft group (shards.go). Nil: no shard groups.
	Shards ShardMachine
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() {
	o.TickInterval = cmp.Or(o.TickInterval, 50*time.Millisecond)
	o.ElectionTicks = cmp.Or(o.ElectionTicks, 10)
	o.HeartbeatTicks = cmp.Or(o.HeartbeatTicks, 1)
	o.DownAfter = cmp.Or(o.DownAfter, 3*time.Second)
	o.LivenessInterval = cmp.Or(o.LivenessInterval, 250*time.Millisecond)
	o.SnapshotEntries = cmp.Or(o.SnapshotEntries, 1000)
	o.KeepEntries = cmp.Or(o.KeepEntries, 100)
	o.LeaderBalanceAfter = cmp.Or(o.LeaderBalanceAfter, 5*time.Second)
	o.ProposalTimeout = cmp.Or(o.ProposalTimeout, 5*time.Second)
	o.MaxEntryBytes = cmp.Or(o.MaxEntryBytes, 1<<20)
	o.NSites = cmp.Or(o.NSites, 1)
	o.ReplicationFactor = cmp.Or(o.ReplicationFactor, 1)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Cluster is this site's member of the metadata group.
type Cluster struct {
	opts   Options
	log    *slog.Logger
	self   uint64
	engine *pebble.DB
	store  *raftlog.Storage

	// metaChanged wakes the shard manager after an applied entry, and
	// transitionsWake the transitions' runner.
	metaChanged, transitionsWake chan struct{}
	// shardGroups are the shard groups started here, by group id.
	shardsMu    sync.Mutex
	shardGroups map[uint64]*shardGroup
	// startCommit is the metadata group's commit index at Start: the
	// shard manager acts once the state has applied it (a restart's state
	// is first its latest snapshot's, which may be older).
	startCommit uint64

	tr   atomic.Pointer[sitelink.Transport]
	node atomic.Pointer[nodeRef]
	// failed is set when the group stopped on a storage error.
	failed atomic.Bool
	// holdTransitions (tests only) keeps the transitions' runner from
	// acting.
	holdTransitions atomic.Bool
	// dropFrom, when set (tests only), drops the raft messages that
	// arrive from the sites it names: a network partition.
	dropFrom atomic.Pointer[func(from string) bool]
	// heard maps a site id to when its raft messages were delivered here
	// (*siteHeard): the leader's liveness check, and whether a shard's
	// preferred replica is back for good (leaders.go).
	heard sync.Map

	mu struct {
		sync.Mutex
		machine *meta.Machine
		cs      *pb.ConfState
		applied uint64
		// snapIndex is the index of the latest snapshot.
		snapIndex uint64
		waiters   map[uint64]chan error
	}

	// joining serializes the conf changes of Joins handled here: raft
	// refuses a conf change while another is pending, and a refused one
	// would leave its Join waiting out the proposal timeout.
	joining sync.Mutex

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type nodeRef struct{ raft.Node }

// New opens the metadata group's raft state in engine and restores the
// state machine from its latest snapshot. Start runs it.
func New(engine *pebble.DB, opts Options) (*Cluster, error) {
	opts.ensureDefaults()
	self, err := meta.NodeID(opts.Site)
	if err != nil {
		return nil, err
	}
	store, err := raftlog.Open(engine, MetaGroup)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, log: opts.Logger.With("component", "cluster"), self: self, engine: engine, store: store,
		metaChanged: make(chan struct{}, 1), transitionsWake: make(chan struct{}, 1), shardGroups: map[uint64]*shardGroup{}}
	c.mu.machine = meta.New()
	c.mu.waiters = map[uint64]chan error{}
	snap, _ := store.Snapshot()
	if !raft.IsEmptySnap(snap) {
		if err := c.mu.machine.Restore(snap.GetData()); err != nil {
			return nil, err
		}
		c.mu.applied, c.mu.snapIndex = snap.GetMetadata().GetIndex(), snap.GetMetadata().GetIndex()
	}
	_, c.mu.cs, _ = store.InitialState()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Start runs the site's member of the group, advertising address (dsd's
// gRPC address) to the other sites. It does not wait for a leader, nor for
// the Join of a first start with Options.Join: that runs in the
// background until it succeeds or Close.
func (c *Cluster) Start(address string) {
	c.tr.Store(sitelink.New(sitelink.Options{
		Site: c.opts.Site, Address: address, DialOptions: c.opts.DialOptions,
		Deliver: c.deliver, Logger: c.opts.Logger,
	}))
	c.mu.Lock()
	for _, s := range c.mu.machine.State().GetSites() {
		c.transport().SetAddress(s.GetId(), s.GetAddress())
	}
	applied := c.mu.applied
	c.mu.Unlock()
	hs, _, _ := c.store.InitialState()
	last, _ := c.store.LastIndex()
	fresh := raft.IsEmptyHardState(hs) && last == 0
	c.startCommit = hs.GetCommit()
	c.startShards(fresh && c.opts.Join != "")
	cfg := &raft.Config{
		ID: c.self, ElectionTick: c.opts.ElectionTicks, HeartbeatTick: c.opts.HeartbeatTicks,
		Storage: c.store, Applied: applied, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256,
		CheckQuorum: true, PreVote: true, Logger: raftLogger{l: c.log.With("raft_group", MetaGroup)},
	}
	self := &clusterv1.Site{Id: c.opts.Site, Address: address, Node: c.opts.Node, JoinedAtUs: time.Now().UnixMicro()}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(fresh, cfg, self, hs.GetCommit())
	}()
}

func (c *Cluster) transport() *sitelink.Transport { return c.tr.Load() }

// Transport is the site link transport (nil before Start), whose Serve is
// SiteService.Link's handler.
func (c *Cluster) Transport() *sitelink.Transport { return c.transport() }

func (c *Cluster) run(fresh bool, cfg *raft.Config, self *clusterv1.Site, commitAtStart uint64) {
	var node raft.Node
	switch {
	case fresh && c.opts.Join == "":
		ctx, err := proto.Marshal(self)
		if err != nil {
			c.log.Error("cannot encode the site record", "err", err)
			return
		}
		node = raft.StartNode(cfg, []raft.Peer{{ID: c.self, Context: ctx}})
		c.log.Info("new cluster: this site is its first member", "site", c.opts.Site)
	case fresh:
		if c.opts.NSites == 1 {
			c.log.Warn("JOINING WITH n_sites = 1: the cluster allocated its shards when its first site started, "+
				"so this site holds no replicas until they are moved to it (set n_sites to the initial cluster size on every site of a new cluster)",
				"join", c.opts.Join)
		}
		if !c.joinUntilDone(self) {
			return
		}
		node = raft.RestartNode(cfg)
	default:
		node = raft.RestartNode(cfg)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.announce(self, commitAtStart)
		}()
	}
	c.node.Store(&nodeRef{node})
	defer func() {
		c.node.Store(nil)
		node.Stop()
	}()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.leaderDuties()
	}()
	c.readyLoop(node)
}

// readyLoop ticks raft and handles its Readys until Close or a storage
// error.
func (c *Cluster) readyLoop(node raft.Node) {
	ticker := time.NewTicker(c.opts.TickInterval)
	defer ticker.Stop()
	var lead uint64
	campaigned := false
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-ticker.C:
			node.Tick()
		case rd := <-node.Ready():
			if rd.SoftState != nil && rd.SoftState.Lead != lead {
				lead = rd.SoftState.Lead
				if lead == raft.None {
					c.log.Info("metadata group has no leader")
				} else {
					c.log.Info("metadata group leader", "leader", meta.SiteID(lead), "this_site", lead == c.self)
				}
			}
			if err := c.handleReady(node, rd); err != nil {
				c.failed.Store(true)
				c.log.Error("metadata group stops: its raft state cannot be persisted", "err", err)
				return
			}
			node.Advance()
			if !campaigned && lead == raft.None && c.alone() {
				// The only voter need not wait out an election timeout
				// (once its configuration is applied: raft refuses to
				// campaign before).
				campaigned = true
				_ = node.Campaign(c.ctx)
			}
		}
	}
}

// alone reports whether this site is the group's only voter.
func (c *Cluster) alone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.mu.cs.GetVoters()
	return len(v) == 1 && v[0] == c.self
}

// handleReady carries out one Ready in raft's order: persist, send, apply.
func (c *Cluster) handleReady(node raft.Node, rd raft.Ready) error {
	if err := c.store.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		return err
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := c.restore(rd.Snapshot); err != nil {
			return err
		}
	}
	tr := c.transport()
	for _, m := range rd.Messages {
		sent := tr.Send(meta.SiteID(m.GetTo()), MetaGroup, m)
		if !sent {
			node.ReportUnreachable(m.GetTo())
		}
		if m.GetType() == pb.MsgSnap {
			// The metadata snapshot travels inside the message: once queued
			// it is as sent as any message.
			status := raft.SnapshotFinish
			if !sent {
				status = raft.SnapshotFailure
			}
			node.ReportSnapshot(m.GetTo(), status)
		}
	}
	for _, e := range rd.CommittedEntries {
		if err := c.apply(node, e); err != nil {
			return err
		}
	}
	return c.maybeSnapshot()
}

func (c *Cluster) restore(snap *pb.Snapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.mu.machine.Restore(snap.GetData()); err != nil {
		return err
	}
	md := snap.GetMetadata()
	c.mu.applied, c.mu.snapIndex, c.mu.cs = md.GetIndex(), md.GetIndex(), md.GetConfState()
	for _, s := range c.mu.machine.State().GetSites() {
		c.transport().SetAddress(s.GetId(), s.GetAddress())
	}
	c.metaApplied()
	return nil
}

// apply applies one committed entry to the state machine (and a conf
// change to raft), then tells a waiting proposer.
func (c *Cluster) apply(node raft.Node, e *pb.Entry) error {
	var reqID uint64
	var result error
	switch e.GetType() {
	case pb.EntryNormal:
		if len(e.GetData()) == 0 {
			break // a new leader's empty entry
		}
		cmd := &clusterv1.Command{}
		if err := proto.Unmarshal(e.GetData(), cmd); err != nil {
			return fmt.Errorf("cluster: entry %d: %w", e.GetIndex(), err)
		}
		reqID = cmd.GetRequestId()
		c.mu.Lock()
		result = c.mu.machine.Apply(cmd)
		c.mu.Unlock()
		if s := cmd.GetSetSite().GetSite(); s != nil && result == nil {
			c.transport().SetAddress(s.GetId(), s.GetAddress())
		}
	case pb.EntryConfChange:
		cc := &pb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("cluster: conf change %d: %w", e.GetIndex(), err)
		}
		reqID = cc.GetId()
		result = c.applyConfChange(cc)
		cs := node.ApplyConfChange(cc)
		if err := c.store.SetConfState(cs); err != nil {
			return err
		}
		c.mu.Lock()
		c.mu.cs = cs
		c.mu.Unlock()
	case pb.EntryConfChangeV2:
		cc := &pb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("cluster: conf change %d: %w", e.GetIndex(), err)
		}
		cs := node.ApplyConfChange(cc)
		if err := c.store.SetConfState(cs); err != nil {
			return err
		}
		c.mu.Lock()
		c.mu.cs = cs
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.mu.applied = e.GetIndex()
	if ch := c.mu.waiters[reqID]; reqID != 0 && ch != nil {
		ch <- result
		delete(c.mu.waiters, reqID)
	}
	c.mu.Unlock()
	c.metaApplied()
	if e.GetType() != pb.EntryNormal {
		// A site that joins after the log was compacted is sent the latest
		// snapshot, and refuses one whose conf state lacks it: snapshot
		// at every membership change, so the latest one always has it.
		return c.snapshot()
	}
	return nil
}

func (c *Cluster) applyConfChange(cc *pb.ConfChange) error {
	site := meta.SiteID(cc.GetNodeId())
	switch cc.GetType() {
	case pb.ConfChangeType_ConfChangeAddNode, pb.ConfChangeType_ConfChangeAddLearnerNode:
		s := &clusterv1.Site{}
		if err := proto.Unmarshal(cc.GetContext(), s); err != nil || s.GetId() != site {
			return fmt.Errorf("cluster: conf change adding %s carries no site record", site)
		}
		c.mu.Lock()
		err := c.mu.machine.AddSite(s)
		c.mu.Unlock()
		if err == nil {
			c.transport().SetAddress(s.GetId(), s.GetAddress())
		}
		return err
	case pb.ConfChangeType_ConfChangeRemoveNode:
		c.mu.Lock()
		c.mu.machine.RemoveSite(site)
		c.mu.Unlock()
		c.transport().RemovePeer(site)
	}
	return nil
}

// maybeSnapshot snapshots the state machine every SnapshotEntries applied
// entries and compacts the log, keeping KeepEntries.
func (c *Cluster) maybeSnapshot() error {
	c.mu.Lock()
	due := c.mu.applied >= c.mu.snapIndex+c.opts.SnapshotEntries
	c.mu.Unlock()
	if !due {
		return nil
	}
	return c.snapshot()
}

// snapshot snapshots the state machine at the applied index and compacts
// the log, keeping KeepEntries.
func (c *Cluster) snapshot() error {
	c.mu.Lock()
	applied, snapIndex := c.mu.applied, c.mu.snapIndex
	if applied <= snapIndex {
		c.mu.Unlock()
		return nil
	}
	data, cs := c.mu.machine.Snapshot(), c.mu.cs
	c.mu.Unlock()
	if _, err := c.store.CreateSnapshot(applied, cs, data); err != nil {
		return err
	}
	c.mu.Lock()
	c.mu.snapIndex = applied
	c.mu.Unlock()
	if applied <= c.opts.KeepEntries {
		return nil
	}
	first, _ := c.store.FirstIndex()
	if to := applied - c.opts.KeepEntries; to >= first {
		if err := c.store.Compact(to); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return err
		}
	}
	return nil
}

// deliver hands a message from another site to raft.
func (c *Cluster) deliver(from string, group uint64, m *pb.Message) {
	if drop := c.dropFrom.Load(); drop != nil && (*drop)(from) {
		return
	}
	c.markHeard(from)
	if group != MetaGroup {
		c.deliverShard(group, m)
		return
	}
	n := c.node.Load()
	if n == nil {
		return
	}
	_ = n.Step(c.ctx, m)
}

// siteHeard is when a site's raft messages were delivered here: last, the
// latest; since, the first after a silence of an election timeout or
// more (unix ns).
type siteHeard struct{ last, since atomic.Int64 }

func (c *Cluster) markHeard(site string) {
	v, ok := c.heard.Load(site)
	if !ok {
		v, _ = c.heard.LoadOrStore(site, new(siteHeard))
	}
	h, now := v.(*siteHeard), time.Now().UnixNano()
	if prev := h.last.Swap(now); prev == 0 || time.Duration(now-prev) >= c.electionTimeout() {
		h.since.Store(now)
	}
}

// lastHeard is when a raft message of site was last delivered here (zero:
// never since the start).
func (c *Cluster) lastHeard(site string) time.Time {
	v, ok := c.heard.Load(site)
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, v.(*siteHeard).last.Load())
}

// heardSince is since when raft messages of site have been delivered here
// without a break of an election timeout (zero: none since the start, or
// none for an election timeout).
func (c *Cluster) heardSince(site string) time.Time {
	v, ok := c.heard.Load(site)
	if !ok {
		return time.Time{}
	}
	h := v.(*siteHeard)
	if time.Since(time.Unix(0, h.last.Load())) >= c.electionTimeout() {
		return time.Time{}
	}
	return time.Unix(0, h.since.Load())
}

// electionTimeout is raft's election timeout (every group's).
func (c *Cluster) electionTimeout() time.Duration {
	return time.Duration(c.opts.ElectionTicks) * c.opts.TickInterval
}

// Close stops the group and the transport and waits for their goroutines.
// The raft state stays in the engine; close the engine after.
func (c *Cluster) Close() {
	c.cancel()
	c.wg.Wait()
	if tr := c.transport(); tr != nil {
		tr.Close()
	}
}

// propose proposes cmd and waits until this site has applied it: the
// state machine's verdict, or ctx's error.
func (c *Cluster) propose(ctx context.Context, cmd *clusterv1.Command) error {
	n, err := c.running()
	if err != nil {
		return err
	}
	id, ch := c.waiter()
	defer c.unwait(id)
	cmd.RequestId = id
	data, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	if err := n.Propose(ctx, data); err != nil {
		return err
	}
	return c.await(ctx, ch)
}

// running returns the raft node, or why there is none.
func (c *Cluster) running() (raft.Node, error) {
	if c.failed.Load() {
		return nil, ErrStopped
	}
	n := c.node.Load()
	if n == nil {
		return nil, ErrNotRunning
	}
	return n.Node, nil
}

func (c *Cluster) waiter() (uint64, chan error) {
	ch := make(chan error, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if id := rand.Uint64(); id != 0 && c.mu.waiters[id] == nil {
			c.mu.waiters[id] = ch
			return id, ch
		}
	}
}

func (c *Cluster) unwait(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mu.waiters, id)
}

func (c *Cluster) await(ctx context.Context, ch chan error) error {
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrNotRunning
	}
}

// dialMember calls fn with a SiteService client of addr.
func (c *Cluster) dialMember(addr string, fn func(dsdv1.SiteServiceClient) error) error {
	conn, err := grpc.NewClient(addr, c.opts.DialOptions...)
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(dsdv1.NewSiteServiceClient(conn))
}
