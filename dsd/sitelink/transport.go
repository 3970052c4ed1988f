package sitelink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Errors of a link.
var (
	ErrClosed     = errors.New("sitelink: closed")
	ErrBadHello   = errors.New("sitelink: bad hello")
	ErrWrongDial  = errors.New("sitelink: the site with the smaller id dials")
	ErrSuperseded = errors.New("sitelink: link superseded by a newer one")
)

// Options configure a Transport.
type Options struct {
	// Site is this site's id; Address the gRPC address it advertises.
	Site, Address string
	// DialOptions are used for every dial (credentials: TLS between sites
	// when dsd has TLS).
	DialOptions []grpc.DialOption
	// Deliver receives every raft message that arrives, on the link's
	// receiving goroutine; it must not block for long.
	Deliver func(from string, group uint64, m *pb.Message)
	// QueueLen bounds each peer's queue of unsent messages. Default 4096.
	QueueLen int
	// MaxBatch and MaxBatchBytes bound one sent batch (a message larger
	// than MaxBatchBytes goes alone). Defaults 256 and 512 KiB, well under
	// dsd's gRPC receive limit.
	MaxBatch, MaxBatchBytes int
	// DownGrace is how long messages for a peer without a link are still
	// queued (a link being set up); after that they are dropped at once,
	// so a dead peer's queue does not fill with stale messages. Default 1s.
	DownGrace time.Duration
	// RedialInterval is the first pause before a dial is retried; it
	// doubles up to 10 times that. Default 100ms.
	RedialInterval time.Duration
	Logger         *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.QueueLen <= 0 {
		o.QueueLen = 4096
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 512 << 10
	}
	if o.DownGrace <= 0 {
		o.DownGrace = time.Second
	}
	if o.RedialInterval <= 0 {
		o.RedialInterval = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Deliver == nil {
		o.Deliver = func(string, uint64, *pb.Message) {}
	}
}

// Transport links this site to its peers.
type Transport struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		peers  map[string]*peer
		closed bool
	}
}

// New returns a Transport with no peers; SetAddress adds them.
func New(opts Options) *Transport {
	opts.ensureDefaults()
	t := &Transport{opts: opts, log: opts.Logger.With("component", "sitelink")}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.peers = map[string]*peer{}
	return t
}

// Site is this site's id.
func (t *Transport) Site() string { return t.opts.Site }

// SetAddress records where a peer listens, adding the peer (and its
// sender goroutine) the first time. A dialing side redials a changed
// address.
func (t *Transport) SetAddress(site, addr string) {
	if site == t.opts.Site {
		return
	}
	p := t.peer(site, true)
	if p == nil {
		return
	}
	p.setAddress(addr)
}

// RemovePeer stops linking to site (it left the cluster).
func (t *Transport) RemovePeer(site string) {
	t.mu.Lock()
	p := t.mu.peers[site]
	delete(t.mu.peers, site)
	t.mu.Unlock()
	if p != nil {
		p.cancel()
	}
}

// peer returns the peer of site, creating it when create is set (nil
// after Close).
func (t *Transport) peer(site string, create bool) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.mu.peers[site]; p != nil || !create || t.mu.closed {
		return p
	}
	p := newPeer(t, site)
	t.mu.peers[site] = p
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		p.run()
	}()
	return p
}

// Send queues m of group for site. It reports false when the message was
// dropped: an unknown peer, a peer without a link for longer than
// DownGrace, or a full queue.
func (t *Transport) Send(site string, group uint64, m *pb.Message) bool {
	p := t.peer(site, false)
	if p == nil {
		return false
	}
	if down := p.downSince.Load(); down != 0 && time.Since(time.Unix(0, down)) > t.opts.DownGrace {
		return false
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return false
	}
	select {
	case p.queue <- &dsdv1.RaftMessage{Group: group, Message: b}:
		return true
	default:
		return false
	}
}

// LastHeard is when anything last arrived from site (zero: never, since
// this Transport started).
func (t *Transport) LastHeard(site string) time.Time {
	p := t.peer(site, false)
	if p == nil {
		return time.Time{}
	}
	ns := p.lastHeard.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Connected reports whether a stream to site is up.
func (t *Transport) Connected(site string) bool {
	p := t.peer(site, false)
	return p != nil && p.connected.Load()
}

// Close ends every link and waits for the transport's goroutines.
func (t *Transport) Close() {
	t.mu.Lock()
	t.mu.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
}

// Serve is SiteService.Link's handler: the accepting end of a link.
func (t *Transport) Serve(stream grpc.BidiStreamingServer[dsdv1.LinkRequest, dsdv1.LinkResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil || hello.GetSite() == "" || hello.GetSite() == t.opts.Site {
		return fmt.Errorf("%w: %v", ErrBadHello, hello)
	}
	if hello.GetSite() > t.opts.Site {
		return fmt.Errorf("%w: %s dialed %s", ErrWrongDial, hello.GetSite(), t.opts.Site)
	}
	p := t.peer(hello.GetSite(), true)
	if p == nil {
		return ErrClosed
	}
	if hello.GetAddress() != "" {
		p.setAddress(hello.GetAddress())
	}
	p.heard()
	if err := stream.Send(&dsdv1.LinkResponse{Hello: &dsdv1.LinkHello{Site: t.opts.Site, Address: t.opts.Address}}); err != nil {
		return err
	}
	l := newLink(func(ms []*dsdv1.RaftMessage) error { return stream.Send(&dsdv1.LinkResponse{Messages: ms}) })
	if !p.attach(l) {
		return ErrClosed
	}
	// Receive here until the stream or the transport ends, then wait until
	// the sender has let go of the stream: gRPC forbids a Send after the
	// handler returns.
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			p.deliver(req.GetMessages())
		}
	}()
	select {
	case err = <-recvErr:
	case <-l.dead:
		// The sender let the link go: a newer link of the same site
		// replaced it, or a send on it failed.
		err = ErrSuperseded
	case <-t.ctx.Done():
		err = ErrClosed
	}
	l.kill()
	<-l.released
	return err
}

// link is one stream as a peer's sender sees it.
type link struct {
	send     func([]*dsdv1.RaftMessage) error
	dead     chan struct{} // closed when the stream is over
	released chan struct{} // closed when the sender no longer uses it
	once     sync.Once
	relOnce  sync.Once
}

func newLink(send func([]*dsdv1.RaftMessage) error) *link {
	return &link{send: send, dead: make(chan struct{}), released: make(chan struct{})}
}

func (l *link) kill()    { l.once.Do(func() { close(l.dead) }) }
func (l *link) release() { l.relOnce.Do(func() { close(l.released) }) }

var (
	errNoAddress = errors.New("sitelink: no address for the peer yet")
	errWrongPeer = errors.New("sitelink: another site answered at the peer's address")
)
