// Command mqttload is an MQTT load generator and history recorder. It runs
// publishers and subscribers against an MQTT server (Strata's gateway, or
// any other), reports throughput and latency, and records what happened so
// internal/checker can judge it.
//
//	mqttload --addr 127.0.0.1:1883 --publishers 10 --subscribers 2 --qos 1 \
//	    --duration 30s --history run.jsonl --check
//	mqttload --qos 2 --durable --sub-offline-at 5s --sub-offline-for 3s \
//	    --sub-addr2 127.0.0.1:1884 --count 20000 --check
//	mqttload --queued 100000 --subscribers 4 --publishers 8   # replay rate
//
// Publishers use paho.golang (MQTT 5.0), or internal/mqttrec (--pub-client
// mqttrec, and always with --mqtt 3). Subscribers use internal/mqttrec, the
// project's recording client, so that QoS 2 duplicate suppression and DUP
// flags are judged on what actually came over the wire. Each payload
// carries its publisher, sequence number and send time. A publisher keeps
// up to --inflight messages unacknowledged, at most one per topic, so each
// topic's messages reach the server in order.
//
// Live mode: subscribers connect and subscribe, publishers publish for
// --count messages each or --duration, then subscribers drain (--drain).
// Queued mode (--queued N): durable subscribers subscribe and disconnect,
// the publishers send N messages in total, the subscribers reconnect and the
// tool times the replay of their offline queues.
//
// A progress line goes to stderr every --progress; the summary to stdout
// (--json for one JSON object). Ctrl-C stops the run and still prints the
// summary (a second Ctrl-C kills). The exit status is 1 on an error or when
// --check finds a violation, 2 on bad flags. docs/mqttload.md describes
// every flag, the history format and how to read the report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/stratamq/strata/internal/buildinfo"
)

func main() {
	os.Exit(mainErr(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, errVersion) {
		buildinfo.Fprint(stdout, "mqttload")
		return 0
	}
	if err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
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
		fmt.Fprintln(stderr, "mqttload:", err)
		return 1
	}
	if rep.Error != "" {
		fmt.Fprintln(stderr, "mqttload:", rep.Error)
		return 1
	}
	if rep.Check != nil && !rep.Check.OK {
		fmt.Fprintln(stderr, "mqttload: the checker found violations")
		return 1
	}
	return 0
}

// errVersion is parseFlags' answer to --version.
var errVersion = errors.New("mqttload: --version")

// parseFlags parses and validates the command line; errors are printed to
// stderr.
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("mqttload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mqttload [flags]\n\nMQTT load generator and history recorder (docs/mqttload.md).\n\n")
		fs.PrintDefaults()
	}
	cfg.registerFlags(fs)
	showVersion := buildinfo.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *showVersion {
		return cfg, errVersion
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q", fs.Args())
		fmt.Fprintln(stderr, "mqttload:", err)
		return cfg, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := cfg.finish(set); err != nil {
		fmt.Fprintln(stderr, "mqttload:", err)
		return cfg, err
	}
	return cfg, nil
}
