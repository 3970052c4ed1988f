package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// logBuffer collects log lines for assertions.
type logBuffer struct{ strings.Builder }

func newTestBoundary(t *testing.T) (*boundary, *logBuffer) {
	t.Helper()
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var buf logBuffer
	return &boundary{log: slog.New(slog.NewTextHandler(&buf, nil)), metrics: newMetrics(db)}, &buf
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestPanicBecomesGenericInternal: a handler panic ends only its call,
// with INTERNAL and a message that does not carry the panic; the stack is
// in the log and the panic is counted.
func TestPanicBecomesGenericInternal(t *testing.T) {
	b, log := newTestBoundary(t)
	const secret = "secret detail: /var/lib/dsd/000123.sst"
	_, err := b.unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x.S/Unary"}, func(context.Context, any) (any, error) {
		panic(secret)
	})
	st := status.Convert(err)
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "secret") {
		t.Fatalf("unary panic: %v; want INTERNAL without the detail", err)
	}
	err = b.stream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/x.S/Stream"}, func(any, grpc.ServerStream) error {
		panic(secret)
	})
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "secret") {
		t.Fatalf("stream panic: %v; want INTERNAL without the detail", err)
	}
	if n := counterValue(t, b.metrics.panics.WithLabelValues("/x.S/Unary")) + counterValue(t, b.metrics.panics.WithLabelValues("/x.S/Stream")); n != 2 {
		t.Errorf("strata_ds_grpc_panics_total = %v, want 2", n)
	}
	if !strings.Contains(log.String(), secret) || !strings.Contains(log.String(), "goroutine") {
		t.Errorf("the log lacks the panic and its stack:\n%s", log.String())
	}
}

// TestUnknownErrorIsGenericInternal: an error the status table does not
// know reaches the caller as INTERNAL with an incident id only; the
// detail is logged with the same id.
func TestUnknownErrorIsGenericInternal(t *testing.T) {
	b, log := newTestBoundary(t)
	inner := errors.New("pebble: open /data/MANIFEST-000042: too many open files")
	_, err := b.unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x.S/M"}, func(context.Context, any) (any, error) {
		return nil, statusFor(fmt.Errorf("dsd: reading: %w", inner))
	})
	st := status.Convert(err)
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "MANIFEST") || !strings.Contains(st.Message(), "incident") {
		t.Fatalf("unknown error: %v; want a generic INTERNAL naming an incident", err)
	}
	var ie *internalError
	if !errors.As(err, &ie) || !strings.Contains(st.Message(), ie.id) {
		t.Fatalf("no incident id in %q", st.Message())
	}
	if !strings.Contains(log.String(), "MANIFEST") || !strings.Contains(log.String(), ie.id) {
		t.Errorf("the log lacks the detail or the incident id:\n%s", log.String())
	}
	// Known errors keep their message.
	if st := status.Convert(statusFor(fmt.Errorf("%w: x", storage.ErrSessionNotFound))); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "x") {
		t.Errorf("a known error: %v", st)
	}
}

// TestRecvLimitFollowsMaxMessage: without an explicit MaxRecvMsgSize, a
// request larger than the largest message plus 64 KiB is refused by gRPC
// (RESOURCE_EXHAUSTED), not read into memory.
func TestRecvLimitFollowsMaxMessage(t *testing.T) {
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 1, MaxMessageBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := listenAndServe(t, db, Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if got, want := srv.opts.MaxRecvMsgSize, 1024+64<<10; got != want {
		t.Errorf("MaxRecvMsgSize = %d, want %d", got, want)
	}
	c, err := client.Dial(srv.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := &storagev1.Message{Topic: "t", Payload: make([]byte, 128<<10)}
	_, err = c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "p", Messages: []*storagev1.Message{big}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 128 KiB request: %v; want RESOURCE_EXHAUSTED from the receive limit", err)
	}
}

// TestServerLimitsHaveDefaults: keepalive enforcement, the stream limit
// and the HTTP server's timeouts are set when the options leave them out.
func TestServerLimitsHaveDefaults(t *testing.T) {
	_, srv := startServer(t)
	o := srv.opts
	if o.MaxConcurrentStreams != DefaultMaxConcurrentStreams || o.KeepaliveMinTime != DefaultKeepaliveMinTime ||
		o.KeepaliveTime != DefaultKeepaliveTime || o.KeepaliveTimeout != DefaultKeepaliveTimeout {
		t.Errorf("gRPC limits: %+v", o)
	}
	h := srv.http
	if h.ReadHeaderTimeout <= 0 || h.ReadTimeout <= 0 || h.IdleTimeout <= 0 {
		t.Errorf("HTTP timeouts: read header %v, read %v, idle %v; want all set", h.ReadHeaderTimeout, h.ReadTimeout, h.IdleTimeout)
	}
}
