package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Shared groups across sites (docs/shared-subscriptions.md, "Across
// sites").
//
// A group's work spans shards: a grant is recorded in the group's shard by
// the reader of a stream of another shard, a member's end is computed in
// the member's shard and applied to the groups' shards, and whether a
// group may be forgotten depends on the sessions of every shard. When
// those shards are replicated and led by different sites, the site doing
// the work hands each part to the leader of the shard it concerns through
// a SharedRemote (dsd/server: SiteService.Shared), which encodes a
// command with the log entry codec; the leader applies it on its shard as
// it would its own (ApplyShared). Reads that decide something (the group's
// cursor before a grant, "does a session subscribe") are answered by the
// shard's leader within its read lease, never from a follower's view. A
// shard this site leads, and every shard of a site alone, is worked on
// here as before: no call is added.

// SharedRemote reaches the leaders of shards this site does not lead, for
// shared groups (dsd/server). Each call gets this site's refusal of the
// shard, which names its leader when one is known; the implementation
// follows further refusals a few hops.
type SharedRemote interface {
	// Apply applies cmd, a shared-group command in the log entry codec,
	// on shard at its leader.
	Apply(ctx context.Context, shard int, refusal error, cmd []byte) (SharedApplied, error)
	// Stream reads a group's state in one stream at the leader of the
	// group's shard.
	Stream(ctx context.Context, shard int, refusal error, filter string, stream Stream) (SharedStreamState, error)
	// Subscribed asks the leader of shard whether a live session of that
	// shard subscribes to filter.
	Subscribed(ctx context.Context, shard int, refusal error, filter string) (bool, error)
	// ForgetIfUnused asks the leader of the group's shard to forget the
	// group unless it is used (ForgetSharedIfUnused there).
	ForgetIfUnused(ctx context.Context, shard int, refusal error, filter string) error
	// Live asks every other site whether a member of the group reads
	// there now; an unanswered site counts as yes.
	Live(ctx context.Context, filter string) (bool, error)
}

// SharedApplied is what a shared-group command did: the grant's id, and
// the counts of a member's end or a stream's drop.
type SharedApplied struct {
	Grant                     uint64
	Returned, Dropped, Missed int
}

// ErrSharedMoved: a new grant was refused because the group's cursor in
// the stream is not where the grant starts: another reader granted that
// range since the state was read (the stream's readers moved to another
// site meanwhile). Read the state again.
var ErrSharedMoved = errors.New("storage: the shared group's cursor moved; read its state again")

// ErrSharedMemberEnded: a grant was refused because the group applied the
// end of its member's connection (that guard or a newer one) before it:
// the reader's entry is stale.
var ErrSharedMemberEnded = fmt.Errorf("%w: the shared group's member's connection ended", ErrStaleGuard)

type sharedRemoteRef struct{ r SharedRemote }

// SetSharedRemote tells the DB how to reach the leaders of the shards it
// does not lead (dsd/server, with a cluster). Without one, the work on
// such shards is skipped or refused, as on a site alone.
func (db *DB) SetSharedRemote(r SharedRemote) { db.sharedRemote.Store(&sharedRemoteRef{r}) }

// elsewhere returns the remote that reaches the shard's leader and this
// site's refusal of the shard when the shard is led elsewhere and a remote
// is set; (nil, nil) when the work is done here (a local shard, or one
// this site leads): one atomic load for a shard without a Replicator.
func (s *shard) elsewhere() (SharedRemote, error) {
	ref := s.repl.r.Load()
	if ref == nil {
		return nil, nil
	}
	refusal := ref.r.CanServe()
	if refusal == nil {
		return nil, nil
	}
	rr := s.db.sharedRemote.Load()
	if rr == nil {
		return nil, nil
	}
	return rr.r, refusal
}

// replicated reports whether a shard has a Replicator (a cluster of
// several sites).
func (db *DB) replicated() bool {
	for _, s := range db.shards {
		if s.repl.r.Load() != nil {
			return true
		}
	}
	return false
}

// sharedDo runs a shared-group command on shard: here when this site does
// the shard's work, else at its leader. A local attempt refused because
// the site lost the leadership meanwhile goes to the new leader.
func (db *DB) sharedDo(ctx context.Context, shard int, cmd command) (SharedApplied, error) {
	if err := db.failErr(); err != nil {
		return SharedApplied{}, err
	}
	s := db.shards[shard]
	for attempt := 0; ; attempt++ {
		remote, refusal := s.elsewhere()
		if remote == nil {
			rep, err := s.do(ctx, &request{kind: reqSession, mkCmd: func(int64) command { return cmd }})
			if err == nil {
				err = rep.err
			}
			if err != nil && attempt < 2 && ctx.Err() == nil {
				if _, refusal := s.elsewhere(); refusal != nil {
					continue // deposed meanwhile: the new leader's work
				}
			}
			return SharedApplied{Grant: rep.sess.grant, Returned: rep.sess.sharedReturned,
				Dropped: rep.sess.sharedDropped, Missed: rep.sess.sharedMissed}, err
		}
		data, err := appendEntry(nil, 0, 0, cmd)
		if err != nil {
			return SharedApplied{}, err
		}
		return remote.Apply(ctx, shard, refusal, data)
	}
}

// ApplyShared applies a shared-group command that another site sent
// (SharedRemote.Apply) on shard, which this site must lead: it is refused
// with the shard's refusal (naming its leader) otherwise, and never sent
// on. Only the shared-group kinds are accepted, and a group's command
// only for the group's shard.
func (db *DB) ApplyShared(ctx context.Context, shard int, data []byte) (SharedApplied, error) {
	s, err := db.shard(shard)
	if err != nil {
		return SharedApplied{}, err
	}
	_, _, cmd, err := decodeEntry(data)
	if err != nil {
		return SharedApplied{}, fmt.Errorf("%w: shared command: %w", ErrInvalidArgument, err)
	}
	var filter string
	switch c := cmd.(type) {
	case cmdSharedGrant:
		filter = c.filter
	case cmdSharedAck:
		filter = c.filter
	case cmdSharedForget:
		filter = c.filter
	case cmdSharedStreamGone:
		filter = c.filter
	case cmdSharedMemberDown:
	default:
		return SharedApplied{}, fmt.Errorf("%w: %T is not a shared group command", ErrInvalidArgument, cmd)
	}
	if filter != "" && (!strings.HasPrefix(filter, sharedPrefix) || db.ShardOf(filter) != shard) {
		return SharedApplied{}, fmt.Errorf("%w: shared command for %q sent to shard %d", ErrInvalidArgument, filter, shard)
	}
	if ref := s.repl.r.Load(); ref != nil {
		if err := ref.r.CanServe(); err != nil {
			return SharedApplied{}, err
		}
	}
	rep, err := s.do(ctx, &request{kind: reqSession, mkCmd: func(int64) command { return cmd }})
	if err == nil {
		err = rep.err
	}
	if err != nil {
		return SharedApplied{}, err
	}
	return SharedApplied{Grant: rep.sess.grant, Returned: rep.sess.sharedReturned,
		Dropped: rep.sess.sharedDropped, Missed: rep.sess.sharedMissed}, nil
}

// ReadSharedStream returns a group's state in one stream, as SharedStream,
// read where the group's shard is led: here, or at its leader.
func (db *DB) ReadSharedStream(ctx context.Context, filter string, stream Stream) (SharedStreamState, error) {
	shard := db.ShardOf(filter)
	if remote, refusal := db.shards[shard].elsewhere(); remote != nil {
		return remote.Stream(ctx, shard, refusal, filter, stream)
	}
	return db.SharedStream(filter, stream), nil
}

// SharedStreamLeader answers another site's ReadSharedStream: the state as
// this site, which must lead the group's shard within its read lease, has
// it.
func (db *DB) SharedStreamLeader(filter string, stream Stream) (SharedStreamState, error) {
	if !strings.HasPrefix(filter, sharedPrefix) {
		return SharedStreamState{}, fmt.Errorf("%w: %q is not a shared filter", ErrInvalidArgument, filter)
	}
	if err := db.shards[db.ShardOf(filter)].readRefusal(); err != nil {
		return SharedStreamState{}, err
	}
	return db.SharedStream(filter, stream), nil
}

// SharedSubscribedLeader answers another site's question: does a live
// session of shard, which this site must lead within its read lease,
// subscribe to filter?
func (db *DB) SharedSubscribedLeader(shard int, filter string) (bool, error) {
	s, err := db.shard(shard)
	if err != nil {
		return false, err
	}
	if err := s.readRefusal(); err != nil {
		return false, err
	}
	return db.shardSubscribes(s, filter), nil
}

// ForgetSharedIfUnusedLeader answers another site's ForgetIfUnused: the
// group's shard must be led here (its refusal otherwise).
func (db *DB) ForgetSharedIfUnusedLeader(ctx context.Context, filter string) error {
	if !strings.HasPrefix(filter, sharedPrefix) {
		return fmt.Errorf("%w: %q is not a shared filter", ErrInvalidArgument, filter)
	}
	if ref := db.shards[db.ShardOf(filter)].repl.r.Load(); ref != nil {
		if err := ref.r.CanServe(); err != nil {
			return err
		}
	}
	return db.ForgetSharedIfUnused(ctx, filter)
}

// sharedSubscribedAnywhere reports whether a live session of any shard
// subscribes to filter: each shard led elsewhere is asked of its leader
// (an error leaves the group: the caller does not forget it).
func (db *DB) sharedSubscribedAnywhere(ctx context.Context, filter string) (bool, error) {
	for _, s := range db.shards {
		if remote, refusal := s.elsewhere(); remote != nil {
			yes, err := remote.Subscribed(ctx, s.id, refusal, filter)
			if err != nil || yes {
				return yes, err
			}
			continue
		}
		if db.shardSubscribes(s, filter) {
			return true, nil
		}
	}
	return false, nil
}
