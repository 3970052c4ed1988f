package session

import storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"

// The actions of delivery (docs/delivery.md). Each one that asks the driver
// for I/O names a Seq (or an Entry) that the driver hands back with the
// answer, so answers may arrive in any order.

// Commit asks the driver to apply a partial session update in dsd
// (SessionService.CommitSession, under the session's guard) and then to call
// Machine.CommitDone with Seq. The machine has at most one Commit in flight.
type Commit struct {
	Seq    uint64
	Commit *storagev1.SessionCommit
}

// Watermarks asks for dsd's start watermark of every shard
// (StorageService.Watermarks), answered with Machine.WatermarksDone: the
// start of a new subscription.
type Watermarks struct {
	Seq uint64
}

// AddWatch asks the driver to add a Watch entry on the gateway link for a
// topic filter in every shard, shard i from StartUs[i], tied to the
// session's guard; announcements come back through Machine.Announced with
// Entry, a failure through Machine.EntryFailed.
type AddWatch struct {
	Entry   uint64
	Filter  string
	StartUs []int64
}

// AddRead asks the driver to add a Read entry for Iterator, tied to the
// session's guard: dsd pushes batches (Machine.Batch with Entry) while
// fewer than Window messages are unacknowledged.
type AddRead struct {
	Entry    uint64
	Iterator []byte
	Window   uint32
	// BatchSize bounds one pushed batch (the zone's batch_size).
	BatchSize uint32
	// Shared, when set, makes the entry the session's reader of a shared
	// group's stream: Iterator only names the stream (and starts a group
	// new to it), and batches come with their grant (Machine.GrantBatch).
	Shared *SharedRead
}

// SharedRead names the shared group of a Read entry.
type SharedRead struct {
	// Filter is the whole shared filter, "$share/{group}/{filter}".
	Filter string
	// QoS is the subscription's maximum QoS.
	QoS uint32
	// Strategy is the zone's mqtt.shared_subscription_strategy.
	Strategy string
	// Held are the grants of the stream the session holds (recorded or
	// waiting to be): dsd hands back any other it granted the session.
	Held []uint64
}

// AckShared tells the group of Filter that the session finished Grant.
type AckShared struct {
	Filter string
	Grant  uint64
}

// Grant is a shared group's grant a batch delivers.
type Grant struct {
	ID uint64
	// ItBegin is where the grant starts in its stream.
	ItBegin []byte
	// Redelivery: another member had it first; QoS 1 goes with DUP.
	Redelivery bool
}

// AckRead releases the window held by batch BatchSeq of Read entry Entry.
type AckRead struct {
	Entry    uint64
	BatchSeq uint64
}

// RemoveEntry ends a Watch or Read entry.
type RemoveEntry struct {
	Entry uint64
}

// Replay asks the driver to read exactly Count messages from Iterator
// (StorageService.Next with a count) and to call Machine.Replayed with Seq:
// the re-read of an unacknowledged batch after a resume.
type Replay struct {
	Seq      uint64
	Iterator []byte
	Count    uint32
}

// FetchRetained asks for the retained messages matching Filter
// (RetainedService), answered with Machine.RetainedFetched.
type FetchRetained struct {
	Seq    uint64
	Filter string
}

// Counted reports N messages to count, for metrics: "replayed" (sent again
// after a resume), "overlap_merged" (left to an older overlapping
// subscription, which sends them once for both), a reason a message was not delivered (expired,
// too_large, no_local, dropped_generation, unsubscribed,
// retained_unavailable), or qos0_overflow (an inbound QoS 0 PUBLISH
// dropped while dsd is behind).
type Counted struct {
	Event string
	N     int
}

func (Commit) action()        {}
func (Watermarks) action()    {}
func (AddWatch) action()      {}
func (AddRead) action()       {}
func (AckShared) action()     {}
func (AckRead) action()       {}
func (RemoveEntry) action()   {}
func (Replay) action()        {}
func (FetchRetained) action() {}
func (Counted) action()       {}

// StreamID names one stream of dsd: a shard, a generation and the static
// index of a learned topic structure.
type StreamID struct {
	Shard       uint32
	Generation  uint64
	StaticIndex string
}

// AnnouncedStream is a stream a Watch entry announced, with an iterator at
// the watch's start.
type AnnouncedStream struct {
	Stream   StreamID
	Iterator []byte
}

// EntryFailure says why dsd ended an entry.
type EntryFailure uint8

// The entry failures the machine tells apart.
const (
	// EntryGone: the entry's generation was dropped (NOT_FOUND); its
	// messages are lost to the session.
	EntryGone EntryFailure = iota + 1
	// EntryStale: the session's guard is stale (taken over).
	EntryStale
	// EntryError: anything else; the connection closes and the client
	// resumes from what dsd holds.
	EntryError
)
