package sitelink

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// peer is one other site: its queue, its sender and its current link.
type peer struct {
	t      *Transport
	site   string
	dials  bool // this site has the smaller id
	queue  chan *dsdv1.RaftMessage
	ctx    context.Context
	cancel context.CancelFunc

	lastHeard atomic.Int64 // unix ns
	connected atomic.Bool
	// downSince is when the peer last had no link (unix ns; 0 while it
	// has one): since its creation, or since its link failed.
	downSince atomic.Int64

	// addrChanged wakes the dialer when the address changes; attached
	// hands the accepting side's links to the sender.
	addrChanged chan struct{}
	attached    chan *link
	mu          struct {
		sync.Mutex
		addr string
	}
}

func newPeer(t *Transport, site string) *peer {
	p := &peer{t: t, site: site, dials: t.opts.Site < site, queue: make(chan *dsdv1.RaftMessage, t.opts.QueueLen),
		addrChanged: make(chan struct{}, 1), attached: make(chan *link)}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	p.downSince.Store(time.Now().UnixNano())
	return p
}

func (p *peer) setAddress(addr string) {
	p.mu.Lock()
	changed := p.mu.addr != addr
	p.mu.addr = addr
	p.mu.Unlock()
	if changed {
		select {
		case p.addrChanged <- struct{}{}:
		default:
		}
	}
}

func (p *peer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.addr
}

func (p *peer) heard() { p.lastHeard.Store(time.Now().UnixNano()) }

func (p *peer) deliver(ms []*dsdv1.RaftMessage) {
	p.heard()
	for _, rm := range ms {
		m := &pb.Message{}
		if err := proto.Unmarshal(rm.GetMessage(), m); err != nil {
			p.t.log.Warn("dropping a malformed raft message", "from", p.site, "err", err)
			continue
		}
		p.t.opts.Deliver(p.site, rm.GetGroup(), m)
	}
}

// attach hands an accepted link to the sender; false once the peer ended.
func (p *peer) attach(l *link) bool {
	select {
	case p.attached <- l:
		return true
	case <-p.ctx.Done():
		l.release()
		return false
	}
}

// run is the peer's sender: it gets a link (dialing or accepted), sends
// batches on it until it fails, and starts over.
func (p *peer) run() {
	backoff := p.t.opts.RedialInterval
	var next *link // attached while the sender was busy with another
	for p.ctx.Err() == nil {
		l, closeLink := next, func() {}
		next = nil
		switch {
		case l != nil:
		case p.dials:
			var err error
			l, closeLink, err = p.dial()
			if err != nil {
				p.t.log.Debug("link dial failed", "peer", p.site, "addr", p.address(), "err", err)
				if !p.pause(backoff) {
					return
				}
				backoff = min(2*backoff, 10*p.t.opts.RedialInterval)
				continue
			}
		default:
			select {
			case l = <-p.attached:
			case <-p.ctx.Done():
				return
			}
		}
		backoff = p.t.opts.RedialInterval
		p.connected.Store(true)
		p.downSince.Store(0)
		p.t.log.Debug("link up", "peer", p.site)
		next = p.sendLoop(l)
		p.connected.Store(false)
		p.downSince.Store(time.Now().UnixNano())
		l.kill()
		l.release()
		closeLink()
	}
	if next != nil {
		next.kill()
		next.release()
	}
}

// pause waits d, or less if the address changes; false when the peer ends.
func (p *peer) pause(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-p.addrChanged:
	case <-p.ctx.Done():
		return false
	}
	return true
}

// sendLoop sends queued messages on l in batches until l dies or the peer
// ends, or (accepting side) the peer dialed again: then it returns the new
// link, which replaces l.
func (p *peer) sendLoop(l *link) (next *link) {
	for {
		select {
		case <-p.ctx.Done():
			return nil
		case <-l.dead:
			return nil
		case nl := <-p.attached:
			return nl
		case m := <-p.queue:
			batch := []*dsdv1.RaftMessage{m}
			size := len(m.GetMessage())
		drain:
			for len(batch) < p.t.opts.MaxBatch && size < p.t.opts.MaxBatchBytes {
				select {
				case m := <-p.queue:
					batch = append(batch, m)
					size += len(m.GetMessage())
				default:
					break drain
				}
			}
			if err := l.send(batch); err != nil {
				return nil
			}
		}
	}
}

// linkKeepalive ends a link whose peer went silent without closing it (a
// crashed machine, a partition) in about 15 s, so the dialer redials
// instead of writing into a dead connection. A live link is never idle
// (raft heartbeats), so it sends no pings; 10 s is the least dsd's server
// accepts (server.DefaultKeepaliveMinTime).
var linkKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

// dial opens the stream to the peer and exchanges hellos; the returned
// link's receiver goroutine runs until the stream ends.
func (p *peer) dial() (*link, func(), error) {
	addr := p.address()
	if addr == "" {
		return nil, nil, errNoAddress
	}
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithKeepaliveParams(linkKeepalive)}, p.t.opts.DialOptions...)...)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(p.ctx)
	fail := func(err error) (*link, func(), error) {
		cancel()
		conn.Close()
		return nil, nil, err
	}
	stream, err := dsdv1.NewSiteServiceClient(conn).Link(ctx)
	if err != nil {
		return fail(err)
	}
	if err := stream.Send(&dsdv1.LinkRequest{Hello: &dsdv1.LinkHello{Site: p.t.opts.Site, Address: p.t.opts.Address}}); err != nil {
		return fail(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return fail(err)
	}
	if resp.GetHello().GetSite() != p.site {
		return fail(errWrongPeer)
	}
	p.heard()
	l := newLink(func(ms []*dsdv1.RaftMessage) error { return stream.Send(&dsdv1.LinkRequest{Messages: ms}) })
	var recv sync.WaitGroup
	recv.Add(1)
	go func() {
		defer recv.Done()
		defer l.kill()
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			p.deliver(resp.GetMessages())
		}
	}()
	return l, func() {
		cancel()
		recv.Wait()
		conn.Close()
	}, nil
}
