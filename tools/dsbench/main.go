// Command dsbench measures dsd's store and read paths over gRPC, and
// optionally the same store workload straight into Pebble, so that dsd's
// overhead over its storage engine is one ratio measured in one run.
//
//	dsbench --addr 127.0.0.1:7070 --duration 15s --concurrency 64 --batch 1 \
//	    --payload 100 --devices 10000 --levels 3 --raw
//	dsbench --mode read --messages 200000 --concurrency 16
//
// A store phase runs --concurrency writers, each a publisher with its own
// client id (so they spread over shards) storing --batch messages per Store
// to topics <prefix>/dev<i>/l1/.../l<levels-1>, until --duration or
// --messages. It reports msgs/s, Stores/s, payload MiB/s, Store latency
// (p50/p90/p99/max) and WAL fsyncs per message, from dsd's /metrics scraped
// before and after. --raw then runs the identical workload through
// storage.Raw into a fresh Pebble instance and prints dsd/raw ratios. A
// read phase (--mode read or both) reads what was stored through
// GetStreams, MakeIterator and Next with --concurrency readers.
//
// Progress goes to stderr once per --progress; the report goes to stdout
// (--json for JSON). Ctrl-C stops the run and prints the report so far.
// docs/benchmarks-dsbench.md describes every flag and how to read the
// report.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/stratamq/strata/internal/buildinfo"
)

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("dsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.registerFlags(fs)
	showVersion := buildinfo.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		buildinfo.Fprint(stdout, "dsbench")
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dsbench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	messagesSet := false
	fs.Visit(func(f *flag.Flag) { messagesSet = messagesSet || f.Name == "messages" })
	if err := cfg.finish(messagesSet); err != nil {
		fmt.Fprintln(stderr, "dsbench:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// After the first Ctrl-C, a second one kills the process.
	context.AfterFunc(ctx, stop)

	rep, err := run(ctx, cfg, stderr)
	if err != nil {
		rep.Error = err.Error()
	}
	if cfg.JSON {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "dsbench:", err)
		return 1
	}
	if rep.Error != "" {
		fmt.Fprintln(stderr, "dsbench:", rep.Error)
		return 1
	}
	return 0
}
