// Command dstool is Strata's admin CLI. It talks to one dsd over gRPC.
//
//	dstool --addr 127.0.0.1:7070 info [--json]
//	dstool read '<topic filter>' [--since 10m|RFC3339|µs] [--limit N] [--json]
//	dstool sessions list|show <client id>|delete <client id> [--guard G] [--json]
//	dstool retained list ['<topic filter>'] [--limit N] [--json]
//	dstool retained delete <topic>
//	dstool shared ['$share/<group>/<filter>'] [--json]
//	dstool set-replicas <site>... [--json]
//	dstool join <site> [--json]
//	dstool leave <site> [--json]
//
// Flags may follow positional arguments.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/gateway/dsdbackend"
	"github.com/stratamq/strata/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "dstool:", err)
		os.Exit(1)
	}
}

type globals struct {
	addr    string
	timeout time.Duration
	tls     client.TLSFiles
	useTLS  bool
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "dstool",
		Short:         "Inspect and administer a Strata dsd",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Get().String(),
	}
	root.SetVersionTemplate("dstool {{.Version}}\n")
	root.PersistentFlags().StringVar(&g.addr, "addr", "127.0.0.1:7070", "dsd gRPC address")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 30*time.Second, "deadline for the whole command")
	root.PersistentFlags().BoolVar(&g.useTLS, "tls", false, "connect with TLS (implied by the other --tls-* flags)")
	root.PersistentFlags().StringVar(&g.tls.CAFile, "tls-ca", "", "CA certificate that signed dsd's certificate (PEM)")
	root.PersistentFlags().StringVar(&g.tls.CertFile, "tls-cert", "", "client certificate for mTLS (PEM)")
	root.PersistentFlags().StringVar(&g.tls.KeyFile, "tls-key", "", "client key for mTLS (PEM)")
	root.PersistentFlags().StringVar(&g.tls.ServerName, "tls-server-name", "", "name to verify in dsd's certificate (default: the --addr host)")
	root.AddCommand(newInfoCmd(g), newReadCmd(g), newGenerationsCmd(g), newStreamsCmd(g), newLTSCmd(g), newSessionsCmd(g), newRetainedCmd(g), newSharedCmd(g),
		newSetReplicasCmd(g), newJoinCmd(g), newLeaveCmd(g))
	return root
}

// dial connects and returns a context bounded by --timeout.
func (g *globals) dial(ctx context.Context) (*client.Client, context.Context, context.CancelFunc, error) {
	opts, err := g.dialOptions()
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := client.Dial(g.addr, opts...)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	return c, ctx, func() { cancel(); c.Close() }, nil
}

// dialOptions are the gRPC options of the connections to dsd (TLS).
func (g *globals) dialOptions() ([]grpc.DialOption, error) {
	if !g.useTLS && g.tls == (client.TLSFiles{}) {
		return nil, nil
	}
	opt, err := client.WithTLS(g.tls)
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{opt}, nil
}

// nowFunc is the clock for relative --since values.
var nowFunc = time.Now

// dialPool is dial for the calls that go to each shard's leader: a pool
// that discovers the cluster from the site dstool dials (one site: a pool
// of it alone, which leads every shard), with the command's deadline.
func (g *globals) dialPool(ctx context.Context) (*dsdbackend.Pool, context.Context, context.CancelFunc, error) {
	opts, err := g.dialOptions()
	if err != nil {
		return nil, nil, nil, err
	}
	pool, err := dsdbackend.NewPool([]string{g.addr}, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	done := func() { cancel(); _ = pool.Close() }
	if err := pool.Refresh(ctx); err != nil {
		done()
		return nil, nil, nil, err
	}
	return pool, ctx, done, nil
}
