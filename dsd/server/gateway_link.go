package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// GatewayLinkOptions configure the GatewayLink service. The zero value is
// valid: every unset field takes its default.
type GatewayLinkOptions struct {
	// BatchSize bounds the messages of one pushed batch
	// (durable_sessions.batch_size). Default 100; at most 10000 (the cap of
	// a Next call), or Listen refuses.
	BatchSize int
	// MaxBatchBytes bounds the bytes (keys plus stored values) of one pushed
	// batch; a single larger message is pushed alone. Default 4 MiB; at
	// most 64 MiB, or Listen refuses.
	MaxBatchBytes int
	// IdlePollInterval is the safety net of Read entries: each rescans its
	// stream at least this often even when no commit woke it
	// (durable_sessions.idle_poll_interval); one ticker per link. Default
	// 10s.
	IdlePollInterval time.Duration
	// RenewStreamsInterval is the safety net of Watch entries: each lists
	// its streams at least this often
	// (durable_sessions.renew_streams_interval); one ticker per link.
	// Default 10s.
	RenewStreamsInterval time.Duration
	// HeartbeatInterval is durable_sessions.gateway_heartbeat_interval: a
	// gateway epoch silent for 3 intervals is dead (lease.go). Default 2s.
	HeartbeatInterval time.Duration
	// MaxEntries bounds the live Watch and Read entries of one link (one
	// gateway epoch): each costs a few hundred bytes in dsd
	// (docs/gateway-link.md "Goroutines"). An entry past it is
	// refused with RESOURCE_EXHAUSTED, which the gateway answers with
	// quota exceeded (0x97) (durable_sessions.max_link_entries).
	// Default 500000.
	MaxEntries int
	// Workers is the number of goroutines of a link that run its entries'
	// steps (Next and listings), whatever the number of entries. Default
	// 4; 1..256.
	Workers int
	// Now is the clock of the leases. Default time.Now; tests inject one.
	Now func() time.Time
}

// Defaults of GatewayLinkOptions.
const (
	DefaultLinkBatchSize     = 100
	DefaultLinkMaxBatchBytes = 4 << 20
	DefaultLinkIdlePoll      = 10 * time.Second
	DefaultLinkRenewStreams  = 10 * time.Second
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultLinkMaxEntries    = 500000
	DefaultLinkWorkers       = 4
	linkMaxWorkers           = 256
	linkSendSlackBytes       = 1 << 20 // keys, iterator and protobuf framing of a batch
	linkOutboundQueue        = 64      // responses waiting for the send loop
	linkMaxBatchMessagesCap  = 10000   // same cap as a Next call
	linkMaxBatchBytesCap     = 64 << 20
)

// EnsureDefaults fills every unset field with its default.
func (o *GatewayLinkOptions) EnsureDefaults() {
	if o.BatchSize == 0 {
		o.BatchSize = DefaultLinkBatchSize
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultLinkMaxBatchBytes
	}
	if o.IdlePollInterval == 0 {
		o.IdlePollInterval = DefaultLinkIdlePoll
	}
	if o.RenewStreamsInterval == 0 {
		o.RenewStreamsInterval = DefaultLinkRenewStreams
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultLinkMaxEntries
	}
	if o.Workers == 0 {
		o.Workers = DefaultLinkWorkers
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every invalid field, joined into one error: limits
// outside their range are refused, not clamped. Call it after
// EnsureDefaults.
func (o GatewayLinkOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("dsd: gateway link: "+format, args...))
	}
	if o.BatchSize < 1 || o.BatchSize > linkMaxBatchMessagesCap {
		bad("BatchSize (durable_sessions.batch_size) %d outside 1..%d", o.BatchSize, linkMaxBatchMessagesCap)
	}
	if o.MaxBatchBytes < 1 || o.MaxBatchBytes > linkMaxBatchBytesCap {
		bad("MaxBatchBytes %d outside 1..%d", o.MaxBatchBytes, linkMaxBatchBytesCap)
	}
	if o.IdlePollInterval <= 0 {
		bad("IdlePollInterval (durable_sessions.idle_poll_interval) %v <= 0", o.IdlePollInterval)
	}
	if o.RenewStreamsInterval <= 0 {
		bad("RenewStreamsInterval (durable_sessions.renew_streams_interval) %v <= 0", o.RenewStreamsInterval)
	}
	if o.HeartbeatInterval <= 0 {
		bad("HeartbeatInterval (durable_sessions.gateway_heartbeat_interval) %v <= 0", o.HeartbeatInterval)
	}
	if o.MaxEntries < 1 {
		bad("MaxEntries (durable_sessions.max_link_entries) %d < 1", o.MaxEntries)
	}
	if o.Workers < 1 || o.Workers > linkMaxWorkers {
		bad("Workers %d outside 1..%d", o.Workers, linkMaxWorkers)
	}
	return errors.Join(errs...)
}

// maxSendMsgSize is the largest response the link sends: a full batch, or
// one message of the largest size alone, plus framing.
func (o GatewayLinkOptions) maxSendMsgSize(db *storage.DB) int {
	return max(o.MaxBatchBytes, db.Options().MaxMessageBytes) + linkSendSlackBytes
}

// Errors of the link, translated by statusFor.
var (
	// errLinkProtocol: the gateway broke the link protocol; the stream ends.
	errLinkProtocol = fmt.Errorf("%w: gateway link protocol", errInvalidRequest)
	// errLinkClosedByGateway: the gateway closed its side; not an error.
	errLinkClosedByGateway = errors.New("dsd: gateway link closed by the gateway")
	// errLinkServerStopping: dsd is shutting down.
	errLinkServerStopping = errors.New("dsd: server stopping")
	// errLinkEntryLimit: the link holds MaxEntries live entries.
	errLinkEntryLimit = errors.New("dsd: too many entries on the gateway link")
)

// gatewayLinkService implements strata.dsd.v1.GatewayLinkService.
//
// Goroutines, per stream: the handler goroutine (gRPC's) owns an errgroup
// holding the send loop, the end watcher, the scheduler's Workers and its
// ticker (gateway_link_sched.go), so their number does not grow with the
// entries; the receive loop runs outside the group because Recv only
// returns once the stream ends, which happens after the handler returns.
// The service's wg owns the receive loops; Server.stop waits for it.
type gatewayLinkService struct {
	dsdv1.UnimplementedGatewayLinkServiceServer
	db       *storage.DB
	opts     GatewayLinkOptions
	log      *slog.Logger
	stopping <-chan struct{}
	leases   *leases
	metrics  *metrics

	// groups coordinates the readers of shared groups (all links).
	groups sharedGroups

	recvLoops sync.WaitGroup
	// links and entries count the live streams and entries (all links).
	links, entries atomic.Int64
}

func newGatewayLinkService(db *storage.DB, opts GatewayLinkOptions, log *slog.Logger, stopping <-chan struct{}, m *metrics) *gatewayLinkService {
	opts.EnsureDefaults()
	log = log.With("component", "gateway_link")
	s := &gatewayLinkService{db: db, opts: opts, log: log, stopping: stopping, metrics: m,
		leases: newLeases(db, opts.HeartbeatInterval, opts.Now, log), groups: sharedGroups{db: db}}
	db.SetSharedLive(s.groups.live)
	db.SetSharedWake(s.groups.wake)
	return s
}

// runLeases runs the lease checker until ctx ends (Server.Serve).
func (s *gatewayLinkService) runLeases(ctx context.Context) { s.leases.run(ctx) }

// wait waits for the receive loops of ended streams; call it after the
// gRPC server stopped.
func (s *gatewayLinkService) wait() { s.recvLoops.Wait() }

// GatewayLink serves one gateway epoch's stream until the gateway closes it,
// the stream breaks, a protocol violation, or the server stops.
func (s *gatewayLinkService) GatewayLink(stream dsdv1.GatewayLinkService_GatewayLinkServer) error {
	first, err := stream.Recv()
	if err != nil {
		return statusFor(err)
	}
	hello := first.GetHello()
	if hello == nil {
		return statusFor(fmt.Errorf("%w: the first request must be a hello, got %T", errLinkProtocol, first.GetKind()))
	}
	// The lease: a dead epoch (or an older one) is refused; killed is
	// closed when the epoch dies while its link is open.
	killed := make(chan struct{})
	var killOnce sync.Once
	release, err := s.leases.hello(hello.GetGatewayId(), hello.GetEpoch(), func() { killOnce.Do(func() { close(killed) }) })
	if err != nil {
		return statusFor(err)
	}
	defer release()
	welcome := &dsdv1.GatewayWelcome{
		Site: s.db.SiteID(), NShards: uint32(s.db.NShards()),
		MaxBatchMessages: uint32(s.opts.BatchSize), MaxBatchBytes: uint64(s.opts.MaxBatchBytes),
		HeartbeatIntervalMs: uint32(s.opts.HeartbeatInterval.Milliseconds()),
		BatchAcks:           true,
	}
	if err := stream.Send(&dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Welcome{Welcome: welcome}}); err != nil {
		return statusFor(err)
	}
	log := s.log.With("gateway", hello.GetGatewayId(), "epoch", hello.GetEpoch())
	s.links.Add(1)
	defer s.links.Add(-1)
	log.Info("gateway link open")

	g, gctx := errgroup.WithContext(stream.Context())
	l := newLink(s, gctx, g)
	l.gatewayID, l.epoch, l.storedValues = hello.GetGatewayId(), hello.GetEpoch(), hello.GetStoredValues()
	defer s.db.OnGuardRevoked(l.guardRevoked)()
	unsubscribe := s.db.SubscribeCommits(l.sched.commit)
	defer unsubscribe()
	recvEnded := make(chan error, 1)
	g.Go(func() error { return l.sendLoop(stream) })
	l.runScheduler()
	g.Go(func() error {
		// The end watcher: on its way out it closes the link to new
		// entries, so none is added after the group ended (endAll).
		defer l.refuseNewWork()
		select {
		case err := <-recvEnded:
			return err
		case <-s.stopping:
			return errLinkServerStopping
		case <-killed:
			return errLinkLeaseExpired
		case <-gctx.Done():
			return nil
		}
	})
	// The receive loop adds entries for the workers; it starts once they
	// run.
	s.recvLoops.Add(1)
	go func() {
		defer s.recvLoops.Done()
		recvEnded <- l.recvLoop(stream)
	}()
	err = g.Wait()
	unsubscribe()
	l.endAll()
	if errors.Is(err, errLinkClosedByGateway) {
		err = nil
	}
	log.Info("gateway link closed", "err", err)
	return statusFor(err)
}

// recvLoop reads requests until the stream ends or the gateway breaks the
// protocol.
func (l *link) recvLoop(stream dsdv1.GatewayLinkService_GatewayLinkServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errLinkClosedByGateway
			}
			return err
		}
		// Every request is a sign of life; a dead epoch's link ends.
		if !l.s.leases.heard(storage.GatewayEpoch{GatewayID: l.gatewayID, Epoch: l.epoch}) {
			return errLinkLeaseExpired
		}
		if err := l.handle(req); err != nil {
			return err
		}
	}
}

// sendLoop is the only caller of stream.Send after the welcome.
func (l *link) sendLoop(stream dsdv1.GatewayLinkService_GatewayLinkServer) error {
	for {
		select {
		case <-l.ctx.Done():
			return nil
		case resp := <-l.out:
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-l.ctl.wake:
			for _, resp := range l.ctl.take() {
				if err := stream.Send(resp); err != nil {
					return err
				}
			}
		}
	}
}

// handle applies one request. It never blocks on an entry's worker; it
// returns an error only for a protocol violation, which ends the stream.
func (l *link) handle(req *dsdv1.GatewayLinkRequest) error {
	switch k := req.GetKind().(type) {
	case *dsdv1.GatewayLinkRequest_Watch:
		l.addWatch(k.Watch)
	case *dsdv1.GatewayLinkRequest_Read:
		l.addRead(k.Read)
	case *dsdv1.GatewayLinkRequest_Ack:
		l.ack(k.Ack)
	case *dsdv1.GatewayLinkRequest_Acks:
		for _, a := range k.Acks.GetAcks() {
			l.ack(a)
		}
	case *dsdv1.GatewayLinkRequest_Remove:
		l.remove(k.Remove.GetEntryId())
	case *dsdv1.GatewayLinkRequest_SharedAck:
		l.sharedAck(k.SharedAck)
	case *dsdv1.GatewayLinkRequest_Heartbeat:
		// The lease was renewed by recvLoop; the ack goes with the control
		// responses (never blocks the receive loop).
		l.ctl.push(&dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_HeartbeatAck{
			HeartbeatAck: &dsdv1.HeartbeatAck{Seq: k.Heartbeat.GetSeq()}}})
	case *dsdv1.GatewayLinkRequest_Hello:
		return fmt.Errorf("%w: a second hello", errLinkProtocol)
	default:
		return fmt.Errorf("%w: an empty request", errLinkProtocol)
	}
	return nil
}
