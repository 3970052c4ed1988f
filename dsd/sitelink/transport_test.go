package sitelink

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/testutil/testpki"
	"github.com/stratamq/strata/internal/testutil/wait"
	"github.com/stratamq/strata/internal/tlsconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// inbox collects delivered messages.
type inbox struct {
	mu  sync.Mutex
	got []string
}

func (in *inbox) deliver(from string, group uint64, m *pb.Message) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.got = append(in.got, fmt.Sprintf("%s/g%d/i%d", from, group, m.GetIndex()))
}

func (in *inbox) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.got)
}

// site is a Transport served by its own gRPC server on a free loopback port.
type site struct {
	tr     *Transport
	srv    *grpc.Server
	addr   string
	inbox  *inbox
	served chan struct{}
}

type linkService struct {
	dsdv1.UnimplementedSiteServiceServer
	tr *Transport
}

func (s linkService) Link(stream grpc.BidiStreamingServer[dsdv1.LinkRequest, dsdv1.LinkResponse]) error {
	return s.tr.Serve(stream)
}

type tlsFiles struct{ serverCfg, clientCfg *tls.Config }

func startSite(t *testing.T, id string, creds *tlsFiles) *site {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &site{addr: lis.Addr().String(), inbox: &inbox{}, served: make(chan struct{})}
	var sopts []grpc.ServerOption
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if creds != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(creds.serverCfg)))
		dial = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(creds.clientCfg))}
	}
	s.tr = New(Options{Site: id, Address: s.addr, DialOptions: dial, Deliver: s.inbox.deliver, MaxBatch: 8, RedialInterval: 10 * time.Millisecond})
	s.srv = grpc.NewServer(sopts...)
	dsdv1.RegisterSiteServiceServer(s.srv, linkService{tr: s.tr})
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(lis)
	}()
	return s
}

func (s *site) stop() {
	s.tr.Close()
	s.srv.Stop()
	<-s.served
}

func msg(i uint64) *pb.Message { return &pb.Message{Type: pb.MsgApp.Enum(), Index: new(i)} }

// TestExchange: two sites learn each other's address from either side
// (the smaller dials, the larger learns the dialer's from its hello) and
// carry messages of several groups both ways, in order per group.
func TestExchange(t *testing.T) {
	a, b := startSite(t, "00000000000000aa", nil), startSite(t, "00000000000000bb", nil)
	defer a.stop()
	defer b.stop()
	a.tr.SetAddress("00000000000000bb", b.addr)
	for i := range uint64(100) {
		if !a.tr.Send("00000000000000bb", i%3, msg(i)) {
			t.Fatalf("send %d dropped", i)
		}
	}
	wait.For(t, 5*time.Second, "b receives 100 messages", func() bool { return b.inbox.count() == 100 })
	// b never got a's address from anyone but a's hello.
	wait.For(t, 5*time.Second, "b knows a", func() bool { return b.tr.Connected("00000000000000aa") })
	for i := range uint64(10) {
		if !b.tr.Send("00000000000000aa", 7, msg(i)) {
			t.Fatalf("reply %d dropped", i)
		}
	}
	wait.For(t, 5*time.Second, "a receives 10 replies", func() bool { return a.inbox.count() == 10 })
	b.inbox.mu.Lock()
	for i, got := range b.inbox.got {
		if want := fmt.Sprintf("00000000000000aa/g%d/i%d", i%3, i); got != want {
			t.Fatalf("message %d: %s, want %s", i, got, want)
		}
	}
	b.inbox.mu.Unlock()
	if a.tr.LastHeard("00000000000000bb").IsZero() {
		t.Fatal("a never heard from b")
	}
}

// TestRedial: the larger site restarts at a new address; once the smaller
// learns it, messages flow again on a new stream.
func TestRedial(t *testing.T) {
	a, b := startSite(t, "00000000000000aa", nil), startSite(t, "00000000000000bb", nil)
	defer a.stop()
	a.tr.SetAddress("00000000000000bb", b.addr)
	a.tr.Send("00000000000000bb", 0, msg(1))
	wait.For(t, 5*time.Second, "first message", func() bool { return b.inbox.count() == 1 })
	b.stop()
	wait.For(t, 5*time.Second, "a sees the link down", func() bool { return !a.tr.Connected("00000000000000bb") })
	b2 := startSite(t, "00000000000000bb", nil)
	defer b2.stop()
	a.tr.SetAddress("00000000000000bb", b2.addr)
	wait.For(t, 5*time.Second, "relinked", func() bool { return a.tr.Connected("00000000000000bb") })
	a.tr.Send("00000000000000bb", 0, msg(2))
	wait.For(t, 5*time.Second, "message after the restart", func() bool { return b2.inbox.count() == 1 })
}

// TestWrongDialer: a larger site may not dial a smaller one (the pair's
// one stream is the smaller's), so it gets no link.
func TestWrongDialer(t *testing.T) {
	a, b := startSite(t, "00000000000000aa", nil), startSite(t, "00000000000000bb", nil)
	defer a.stop()
	defer b.stop()
	p := newPeer(b.tr, "00000000000000aa")
	p.setAddress(a.addr)
	p.dials = true // as if b had the smaller id
	if _, _, err := p.dial(); err == nil {
		t.Fatal("a accepted a link dialed by a larger site")
	}
	p.cancel()
}

// TestMutualTLS: with TLS, sites whose certificates the CA signed link; a
// site with a certificate of another CA does not.
func TestMutualTLS(t *testing.T) {
	ca, other := testpki.New(t), testpki.New(t)
	files := func(p *testpki.PKI, name string) *tlsFiles {
		cert, key := p.IssueWith(t, name, testpki.IssueOptions{Server: true, ClientToo: true})
		srv, err := tlsconf.Server(cert, key, p.CAFile, tls.RequireAndVerifyClientCert)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		// Sites trust the cluster's CA, whichever certificate they hold.
		return &tlsFiles{serverCfg: srv, clientCfg: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}
	}
	a := startSite(t, "00000000000000aa", files(ca, "site-a"))
	b := startSite(t, "00000000000000bb", files(ca, "site-b"))
	defer a.stop()
	defer b.stop()
	a.tr.SetAddress("00000000000000bb", b.addr)
	a.tr.Send("00000000000000bb", 0, msg(1))
	wait.For(t, 5*time.Second, "a message over mTLS", func() bool { return b.inbox.count() == 1 })

	// other's certificate is signed by another CA: b refuses the handshake.
	c := startSite(t, "0000000000000001", files(other, "intruder"))
	defer c.stop()
	p := newPeer(c.tr, "00000000000000bb")
	p.setAddress(b.addr)
	if _, _, err := p.dial(); err == nil {
		t.Fatal("a site with a certificate of another CA linked")
	}
	p.cancel()
}

// TestDropsForADeadPeer: messages for a peer that has had no link for
// longer than DownGrace are refused at once (the caller reports the peer
// unreachable to raft) instead of filling its queue with stale messages.
func TestDropsForADeadPeer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close() // nothing listens there any more
	tr := New(Options{Site: "00000000000000aa", Address: "127.0.0.1:1", DownGrace: 50 * time.Millisecond, RedialInterval: 10 * time.Millisecond,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	defer tr.Close()
	tr.SetAddress("00000000000000bb", dead)
	if !tr.Send("00000000000000bb", 0, msg(1)) {
		t.Fatal("a message within the grace of a new peer was dropped")
	}
	wait.For(t, 5*time.Second, "messages for the dead peer refused", func() bool { return !tr.Send("00000000000000bb", 0, msg(2)) })
}
