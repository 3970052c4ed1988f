package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"

	"github.com/stratamq/strata/dsd/meta"
	"github.com/stratamq/strata/dsd/raftlog"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Shard snapshots (docs/replication.md). A shard group's raft snapshots
// carry no data: raft sends one (MsgSnap, metadata only) to a replica that
// needs entries the log dropped, and that replica fetches the shard's
// state from the sender with SiteService.ShardSnapshot, in chunks read
// from one consistent view of the sender's storage, installs it
// (ShardMachine.InstallSnapshot: crash-safe) and records the snapshot in
// its raft log; its raft then answers the leader, which resumes sending
// entries. The state the sender streams covers the snapshot's index or a
// later one; the receiver skips the committed entries the state already
// covers.

// ShardSnapshot is a consistent view of a shard's state
// (storage.ShardSnapshot).
type ShardSnapshot interface {
	// Applied is the index of the last entry the view covers.
	Applied() uint64
	// NextChunk appends the next pairs to dst, up to about maxBytes;
	// last reports that the view is exhausted.
	NextChunk(dst []byte, maxBytes int) (chunk []byte, last bool, err error)
	Close() error
}

// ErrNoSnapshot: this site cannot serve the shard snapshot asked for.
var ErrNoSnapshot = errors.New("cluster: no shard snapshot here")

// snapshotData is the data of every shard group snapshot: the state is
// fetched from the site that sent it.
var snapshotData = []byte("strata: shard snapshot: fetch the state with SiteService.ShardSnapshot")

// snapshotChunkBytes is about the size of one chunk of a shard snapshot.
const snapshotChunkBytes = 512 << 10

// snapshotRecvBytes bounds one chunk as the receiver accepts it: a chunk
// is snapshotChunkBytes and one more pair (a message of up to dsd's
// message size limit).
const snapshotRecvBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshotTracker is the leader's view of the snapshots it sent: when raft
// sent each replica one and whether the replica is fetching it. A snapshot
// not fetched within snapshotTimeout (its message lost) is reported failed,
// so raft sends another. startShardGroup makes its maps.
type snapshotTracker struct {
	mu      sync.Mutex
	sent    map[uint64]time.Time
	serving map[uint64]int
}

func (t *snapshotTracker) markSent(to uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent[to] = time.Now()
}

// serve records a fetch by to; done ends it.
func (t *snapshotTracker) serve(to uint64) (done func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.serving[to]++
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.serving[to]--; t.serving[to] <= 0 {
			delete(t.serving, to)
		}
		delete(t.sent, to)
	}
}

// expired returns the replicas sent a snapshot longer than timeout ago that
// are not fetching it, and forgets them.
func (t *snapshotTracker) expired(timeout time.Duration) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []uint64
	for to, at := range t.sent {
		if t.serving[to] == 0 && time.Since(at) > timeout {
			out = append(out, to)
			delete(t.sent, to)
		}
	}
	return out
}

// snapshotTimeout is how long a replica sent a snapshot has to start
// fetching it, and how long a fetch may wait for its next chunk.
func (g *shardGroup) snapshotTimeout() time.Duration {
	return 10 * g.electionTimeout()
}

// reportSnapshot tells raft how the snapshot sent to a replica ended.
func (g *shardGroup) reportSnapshot(to uint64, ok bool) {
	n := g.node.Load()
	if n == nil {
		return
	}
	status := raft.SnapshotFinish
	if !ok {
		status = raft.SnapshotFailure
	}
	n.ReportSnapshot(to, status)
}

// ServeShardSnapshot streams the state of a shard this site holds, at
// req's min_index or later, to a replica of the shard's group; on the
// leader, raft learns how the snapshot it sent ended.
func (c *Cluster) ServeShardSnapshot(req *dsdv1.ShardSnapshotRequest, send func(*dsdv1.ShardSnapshotResponse) error) error {
	sm := c.opts.Shards
	shard := int(req.GetShard())
	if sm == nil || shard >= sm.NShards() {
		return fmt.Errorf("%w: shard %d is not a shard of this site", ErrNoSnapshot, shard)
	}
	g := c.shardGroup(ShardGroup(shard))
	if g == nil || g.node.Load() == nil || g.failed.Load() {
		return fmt.Errorf("%w: shard %d's group is not running here", ErrNoSnapshot, shard)
	}
	to, err := meta.NodeID(req.GetSite())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoSnapshot, err)
	}
	done := g.snapshots.serve(to)
	defer done()
	n, err := g.serveSnapshot(req, send)
	if err != nil {
		g.c.log.Warn("shard snapshot not sent", "shard", shard, "replica", req.GetSite(), "err", err)
		g.reportSnapshot(to, false)
		return err
	}
	g.snapshotsSent.Add(1)
	g.c.log.Info("shard snapshot sent", "shard", shard, "replica", req.GetSite(), "bytes", n)
	g.reportSnapshot(to, true)
	return nil
}

func (g *shardGroup) serveSnapshot(req *dsdv1.ShardSnapshotRequest, send func(*dsdv1.ShardSnapshotResponse) error) (int64, error) {
	snap, err := g.c.opts.Shards.OpenSnapshot(g.shard)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	if snap.Applied() < req.GetMinIndex() {
		return 0, fmt.Errorf("%w: shard %d is at index %d here, before %d", ErrNoSnapshot, g.shard, snap.Applied(), req.GetMinIndex())
	}
	crc := crc32.New(castagnoli)
	var total int64
	var buf []byte
	for {
		chunk, last, err := snap.NextChunk(buf[:0], snapshotChunkBytes)
		if err != nil {
			return total, err
		}
		_, _ = crc.Write(chunk)
		total += int64(len(chunk))
		resp := &dsdv1.ShardSnapshotResponse{AppliedIndex: snap.Applied(), Data: chunk, Last: last}
		if last {
			resp.Crc32C, resp.TotalBytes = crc.Sum32(), uint64(total)
		}
		if err := send(resp); err != nil {
			return total, err
		}
		if last {
			return total, nil
		}
		buf = chunk
	}
}

// initialize writes, for a group without raft state here, what its mode
// starts from: a replica being added starts from a new shard's records (it
// replays the log from its first entry, or installs a snapshot); the only
// replica of a local shard marks its state as the group's first snapshot
// (promotedIndex, term 1, itself the only voter).
func (g *shardGroup) initialize(store *raftlog.Storage) error {
	hs, _, err := store.InitialState()
	if err != nil {
		return err
	}
	last, err := store.LastIndex()
	if err != nil || !raft.IsEmptyHardState(hs) || last > 0 {
		return err
	}
	sm := g.c.opts.Shards
	switch g.mode {
	case groupJoin:
		return sm.ResetShard(g.shard)
	case groupPromote:
		if err := sm.MarkReplicated(g.shard, promotedIndex); err != nil {
			return err
		}
		snap := &pb.Snapshot{Data: snapshotData, Metadata: &pb.SnapshotMetadata{Index: new(uint64(promotedIndex)), Term: new(uint64(1)),
			ConfState: &pb.ConfState{Voters: []uint64{g.c.self}}}}
		hs := &pb.HardState{Term: new(uint64(1)), Commit: new(uint64(promotedIndex))}
		if err := store.Save(hs, nil, snap); err != nil {
			return err
		}
		g.c.log.Info("shard group started from the local shard's state: replicas are being added", "shard", g.shard)
	}
	return nil
}

// installSnapshot installs the state of the snapshot rd carries, fetched
// from the group's leader, then saves rd (the snapshot, entries and hard
// state) before the install is marked complete. It retries (a new leader,
// a lost link) until it succeeds or the cluster closes.
func (g *shardGroup) installSnapshot(rd raft.Ready) error {
	c := g.c
	md := rd.Snapshot.GetMetadata()
	began := time.Now()
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		from := g.lead.Load()
		var err error
		var applied uint64
		var size int64
		if from == raft.None || from == c.self {
			err = errors.New("no leader to fetch it from")
		} else {
			applied, size, err = g.fetchAndInstall(meta.SiteID(from), md.GetIndex(), func() error {
				return g.store.Save(rd.HardState, rd.Entries, rd.Snapshot)
			})
		}
		if err == nil {
			g.installedThrough = applied
			g.truncated = md.GetIndex()
			g.snapshotsInstalled.Add(1)
			c.log.Info("shard snapshot installed", "shard", g.shard, "snapshot_index", md.GetIndex(), "applied", applied,
				"from", meta.SiteID(from), "bytes", size, "took", time.Since(began).Round(time.Millisecond))
			return nil
		}
		if g.ctx.Err() != nil {
			return nil
		}
		c.log.Warn("shard snapshot not installed yet; retrying", "shard", g.shard, "snapshot_index", md.GetIndex(), "attempt", attempt, "err", err)
		if !g.sleep(backoff) {
			return nil
		}
		backoff = min(2*backoff, time.Second)
	}
}

// refetch installs, before the group's raft runs, the shard's state from
// any other replica that has it at atLeast or later: the install of a snapshot
// was interrupted by a crash and the shard reset. It retries until it
// succeeds or the cluster closes.
func (g *shardGroup) refetch(cs *pb.ConfState, atLeast uint64) error {
	c := g.c
	c.log.Warn("a shard snapshot's install was interrupted: fetching the shard's state again before its group starts", "shard", g.shard, "at_least", atLeast)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// The conf state's members, and the replica set's (a replica
		// being added may have saved no conf state yet).
		ids := slices.Concat(cs.GetVoters(), cs.GetLearners())
		for _, p := range g.peers {
			if id, err := meta.NodeID(p); err == nil {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			if id == c.self {
				continue
			}
			applied, size, err := g.fetchAndInstall(meta.SiteID(id), atLeast, func() error { return nil })
			if err == nil {
				g.snapshotsInstalled.Add(1)
				c.log.Info("shard state installed again", "shard", g.shard, "applied", applied, "from", meta.SiteID(id), "bytes", size)
				return nil
			}
			if g.ctx.Err() != nil {
				return nil
			}
			c.log.Warn("shard state not fetched", "shard", g.shard, "from", meta.SiteID(id), "attempt", attempt, "err", err)
		}
		if !g.sleep(backoff) {
			return nil
		}
		backoff = min(2*backoff, time.Second)
	}
}

// fetchAndInstall fetches the shard's state (at atLeast or later) from site
// and installs it; saved records the raft snapshot once the state is
// durable.
func (g *shardGroup) fetchAndInstall(site string, atLeast uint64, saved func() error) (applied uint64, size int64, err error) {
	addr := g.c.Site(site).GetAddress()
	if addr == "" {
		return 0, 0, fmt.Errorf("site %s has no known address", site)
	}
	err = g.c.dialMember(addr, func(cl dsdv1.SiteServiceClient) error {
		ctx, cancel := context.WithCancel(g.ctx)
		defer cancel()
		idle := time.AfterFunc(g.snapshotTimeout(), cancel)
		defer idle.Stop()
		stream, err := cl.ShardSnapshot(ctx, &dsdv1.ShardSnapshotRequest{Shard: uint32(g.shard), Site: g.c.opts.Site, MinIndex: atLeast},
			grpc.MaxCallRecvMsgSize(snapshotRecvBytes))
		if err != nil {
			return err
		}
		crc := crc32.New(castagnoli)
		done := false
		next := func() ([]byte, error) {
			if done {
				return nil, io.EOF
			}
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: the stream ended before its last chunk", ErrNoSnapshot)
			}
			if err != nil {
				return nil, err
			}
			idle.Reset(g.snapshotTimeout())
			if applied == 0 {
				applied = resp.GetAppliedIndex()
			}
			if resp.GetAppliedIndex() != applied || applied < atLeast {
				return nil, fmt.Errorf("%w: a chunk at index %d of a snapshot at %d (at least %d)", ErrNoSnapshot, resp.GetAppliedIndex(), applied, atLeast)
			}
			_, _ = crc.Write(resp.GetData())
			size += int64(len(resp.GetData()))
			if resp.GetLast() {
				if resp.GetCrc32C() != crc.Sum32() || resp.GetTotalBytes() != uint64(size) {
					return nil, fmt.Errorf("%w: %d bytes, crc %08x; the sender says %d bytes, crc %08x", ErrNoSnapshot, size, crc.Sum32(), resp.GetTotalBytes(), resp.GetCrc32C())
				}
				done = true
			}
			return resp.GetData(), nil
		}
		_, err = g.c.opts.Shards.InstallSnapshot(g.shard, next, func(uint64) error { return saved() })
		return err
	})
	return applied, size, err
}

// expireSnapshots reports, on the leader, the snapshots sent that no
// replica fetched in time: raft sends them again.
func (g *shardGroup) expireSnapshots(node raft.Node) {
	for _, to := range g.snapshots.expired(g.snapshotTimeout()) {
		g.c.log.Warn("shard snapshot not fetched in time; raft sends another", "shard", g.shard, "replica", meta.SiteID(to))
		node.ReportSnapshot(to, raft.SnapshotFailure)
	}
}

// snapMessage notes a snapshot raft sends (a MsgSnap, metadata only).
func (g *shardGroup) snapMessage(node raft.Node, m *pb.Message, sent bool) {
	if !sent {
		node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		return
	}
	g.snapshots.markSent(m.GetTo())
	g.c.log.Info("shard group sends a snapshot", "shard", g.shard, "replica", meta.SiteID(m.GetTo()),
		"index", m.GetSnapshot().GetMetadata().GetIndex())
}
