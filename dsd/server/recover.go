package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"
)

// errPanic is wrapped by the error a recovered panic becomes; it is not in
// the status table, so the caller gets the generic INTERNAL status.
var errPanic = errors.New("dsd: handler panic")

// boundary is the outermost interceptor pair: the panic boundary of every
// call (STYLE.md rule 9) and the one place where an INTERNAL error's
// detail is logged. A panic in a handler's goroutine ends that call with
// INTERNAL, its stack in the log and strata_ds_grpc_panics_total counted;
// the process goes on. dsd's storage goroutines (shard writers, timers)
// have no such boundary: a panic there crashes dsd, and the crash tests
// cover the restart.
type boundary struct {
	log     *slog.Logger
	metrics *metrics
}

func (b *boundary) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, b.recovered(info.FullMethod, r)
		}
		b.logInternal(info.FullMethod, err)
	}()
	return handler(ctx, req)
}

func (b *boundary) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = b.recovered(info.FullMethod, r)
		}
		b.logInternal(info.FullMethod, err)
	}()
	return handler(srv, ss)
}

// recovered logs and counts a recovered panic and returns the error the
// caller gets.
func (b *boundary) recovered(method string, r any) error {
	b.metrics.panics.WithLabelValues(method).Inc()
	err := statusFor(fmt.Errorf("%w: %s: %v", errPanic, method, r))
	b.log.Error("panic in a gRPC handler; the call fails with INTERNAL", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return err
}

// logInternal logs the detail of an error answered with the generic
// INTERNAL status.
func (b *boundary) logInternal(method string, err error) {
	var ie *internalError
	if !errors.As(err, &ie) {
		return
	}
	b.metrics.internalErrors.WithLabelValues(method).Inc()
	b.log.Error("internal error", "method", method, "incident", ie.id, "err", ie.err)
}
