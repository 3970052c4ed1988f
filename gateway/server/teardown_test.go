package server

import (
	"context"
	"errors"
	"github.com/stratamq/strata/internal/testutil"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/dsdbackend"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// faultBackend records session ends and commits; Store panics for the
// topic "boom" and Commit when panicCommit is set (the faults).
type faultBackend struct {
	*session.MemBackend
	router      *dsdbackend.Router
	panicCommit bool

	mu      sync.Mutex
	ends    []session.DisconnectRequest
	commits int
}

func newFaultBackend() *faultBackend {
	return &faultBackend{MemBackend: session.NewMemBackend(nil, false), router: dsdbackend.NewRouter()}
}

func (b *faultBackend) Disconnect(ctx context.Context, req session.DisconnectRequest) error {
	b.mu.Lock()
	b.ends = append(b.ends, req)
	b.mu.Unlock()
	return b.MemBackend.Disconnect(ctx, req)
}

func (b *faultBackend) Submit(req session.StoreRequest, done func(error)) {
	for _, m := range req.Messages {
		if m.Topic == "boom" {
			panic("test fault in Store")
		}
	}
	b.MemBackend.Submit(req, done)
}

func (b *faultBackend) Commit(ctx context.Context, c *storagev1.SessionCommit) error {
	if b.panicCommit {
		panic("test fault in Commit")
	}
	b.mu.Lock()
	b.commits++
	b.mu.Unlock()
	return nil
}

func (b *faultBackend) Watermarks(context.Context) ([]int64, error) { return nil, nil }
func (b *faultBackend) Replay(context.Context, []byte, uint32) ([]*storagev1.Message, error) {
	return nil, errors.New("no replay")
}
func (b *faultBackend) Retained(context.Context, string) ([]*storagev1.Message, error) {
	return nil, nil
}
func (b *faultBackend) Router() *dsdbackend.Router { return b.router }

func (b *faultBackend) result() ([]session.DisconnectRequest, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]session.DisconnectRequest(nil), b.ends...), b.commits
}

func faultServer(t *testing.T, b *faultBackend, hooks *testHooks) *Server {
	return testServer(t, func(o *Options) {
		o.Backend, o.Storage, o.Delivery, o.hooks = b, b, b, hooks
	})
}

// connectDurable connects an MQTT 5 client with a session that outlives
// the connection (its delivery progress is committed at the end).
func connectDurable(t *testing.T, s *Server, id string) *client {
	c := newClient(t, dial(t, s, "tcp"), packet.V5)
	cp := &packet.Connect{Version: packet.V5, ClientID: id, CleanStart: true}
	cp.Properties.SessionExpiryInterval = 300
	cp.Properties.Present.Add(packet.PropSessionExpiryInterval)
	c.send(cp)
	if ack, ok := c.mustRecv().(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %+v", ack)
	}
	return c
}

// TestNoFinalCommitAfterPanic: after a panic is recovered, the connection
// does not commit its delivery progress (the machine's state is unknown)
// and ends its session as an abnormal end (will, expiry kept,
// internal_error), not as the close it was.
func TestNoFinalCommitAfterPanic(t *testing.T) {
	b := newFaultBackend()
	s := faultServer(t, b, nil)
	// Without a fault the final commit happens.
	c := connectDurable(t, s, "calm")
	c.send(&packet.Disconnect{})
	c.expectClosed()
	wait.For(t, 5*time.Second, "the calm session's end", func() bool { e, _ := b.result(); return len(e) == 1 })
	if _, commits := b.result(); commits != 1 {
		t.Fatalf("%d final commits without a fault, want 1", commits)
	}
	c = connectDurable(t, s, "faulty")
	c.send(&packet.Publish{Topic: "boom", QoS: 1, PacketID: 1, Payload: []byte("x")})
	c.expectClosed()
	wait.For(t, 5*time.Second, "the faulty session's end", func() bool { e, _ := b.result(); return len(e) == 2 })
	ends, commits := b.result()
	if commits != 1 {
		t.Errorf("a final commit after a recovered panic (%d commits)", commits)
	}
	if e := ends[1]; e.ClientID != "faulty" || e.Reason != session.ReasonInternalError || !e.Will || e.Expiry != 300 {
		t.Errorf("session end after a panic: %+v, want abnormal (internal_error, will, expiry 300)", e)
	}
}

// TestTeardownPanicBoundary: a panic while tearing a connection down (in
// the final commit, or a fault injected before it) is recovered and
// counted like any other, the session still ends abnormally, and the
// gateway goes on.
func TestTeardownPanicBoundary(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     *faultBackend
		hooks *testHooks
	}{
		{"final commit", &faultBackend{MemBackend: session.NewMemBackend(nil, false), router: dsdbackend.NewRouter(), panicCommit: true}, nil},
		{"hook", newFaultBackend(), &testHooks{teardown: func() { panic("test fault in teardown") }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := faultServer(t, tc.b, tc.hooks)
			c := connectDurable(t, s, "doomed")
			c.send(&packet.Disconnect{})
			c.expectClosed()
			wait.For(t, 5*time.Second, "the session's end", func() bool { e, _ := tc.b.result(); return len(e) == 1 })
			ends, commits := tc.b.result()
			if commits != 0 || ends[0].Reason != session.ReasonInternalError || !ends[0].Will {
				t.Errorf("after a teardown panic: %d commits, end %+v; want none and an abnormal end", commits, ends[0])
			}
			if m := testutil.Metrics(t, s.HTTPAddr()); !strings.Contains(m, "strata_gateway_panics_recovered_total 1") {
				t.Errorf("panic not counted:\n%s", testutil.Lines(m, "panics"))
			}
			ok := newClient(t, dial(t, s, "tcp"), packet.V5)
			if ack := ok.connect("after", 0); ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK %v after a teardown panic", ack.ReasonCode)
			}
		})
	}
}

// TestHTTPTimeouts: the HTTP endpoint closes a connection that sends half a
// request (ReadHeaderTimeout, ReadTimeout) or idles after one
// (IdleTimeout), so metrics and health checks cannot be starved.
func TestHTTPTimeouts(t *testing.T) {
	s := testServer(t, func(o *Options) {
		o.HTTP = HTTPTimeouts{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
			WriteTimeout: time.Second, IdleTimeout: 300 * time.Millisecond}
	})
	for name, req := range map[string]string{
		"half a header": "GET /healthz HTTP/1.1\r\nHost: x\r\n",
		"slow body":     "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
		"idle":          "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		nc, err := net.Dial("tcp", s.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(nc, req); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, nc)
		nc.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the connection is still open after 5 s", name)
		}
	}
	h := s.httpSrv
	if h.ReadHeaderTimeout == 0 || h.ReadTimeout == 0 || h.WriteTimeout == 0 || h.IdleTimeout == 0 {
		t.Errorf("an HTTP timeout is unset: %+v", HTTPTimeouts{h.ReadHeaderTimeout, h.ReadTimeout, h.WriteTimeout, h.IdleTimeout})
	}
	if resp, err := http.Get("http://" + s.HTTPAddr() + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	} else {
		resp.Body.Close()
	}
}
