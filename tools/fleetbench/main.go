// Command fleetbench measures what a fleet of idle durable sessions costs:
// N MQTT 5 clients (client ids dev-0 … dev-N-1), each with a durable session
// (Clean Start 0, Session Expiry --expiry) and one QoS 1 subscription to
// devices/<i>/cmd, connect, subscribe and then sit idle. It reports the
// connect+subscribe rate and the resident memory (VmRSS) the servers grew
// by, per session; with --kill it then SIGKILLs the gateway, starts it
// again, publishes one QoS 1 message to each device's topic while the
// devices are away, reconnects them all and counts the messages received.
//
//	fleetbench --bin bin --sessions 20000 --kill
//	fleetbench --bin bin --sessions 5000 --mosquitto /usr/sbin/mosquitto --json
//	fleetbench --addr 127.0.0.1:1883 --sessions 1000   # a running server
//
// It starts dsd and a gateway from --bin on free loopback ports with a
// temporary data directory (or uses --addr, without RSS figures unless
// --pids names the processes), and mosquitto when --mosquitto is set. The
// clients connect from 127.0.0.1 … 127.0.0.<--sources>, so that one source
// address's ephemeral ports do not bound the fleet, at most --dials at a
// time. Idle clients hold only their socket (no goroutine). RLIMIT_NOFILE is
// raised for itself and the children (root may raise the hard limit too).
// docs/fleetbench.md describes the flags and how to read the summary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/stratamq/strata/internal/buildinfo"
)

var errVersion = errors.New("version")

// Config is what one run does.
type Config struct {
	// Bin holds dsd and gateway (make build's bin/).
	Bin string
	// Addr, when set, is a running MQTT server to use instead of starting
	// dsd and a gateway; Pids are its processes, for RSS.
	Addr string
	Pids []int
	// Mosquitto, when set, is a mosquitto binary to measure the same way.
	Mosquitto string
	// Sessions is the fleet size.
	Sessions int
	// Sources is how many loopback source addresses (127.0.0.1 …) clients use.
	Sources int
	// Dials is the most connection attempts in flight.
	Dials int
	// Expiry is the Session Expiry Interval the devices ask for.
	Expiry time.Duration
	// Settle is how long the fleet sits idle before RSS is read.
	Settle time.Duration
	// Kill: SIGKILL the gateway, publish to every device while it is away,
	// reconnect all and count what they receive.
	Kill bool
	// Timeout bounds each phase.
	Timeout time.Duration
	// Pprof starts the gateway with --pprof and writes its heap profile to
	// this file once the fleet is idle.
	Pprof string
	// DSDPprof starts dsd with --pprof and writes its heap profile to this
	// file once the fleet is idle.
	DSDPprof string
	// TempDir holds the data directories and logs; empty: os.TempDir().
	TempDir string
	// Keep keeps the temporary directory.
	Keep bool
	// JSON prints one JSON object instead of Markdown.
	JSON bool
}

func defaultConfig() Config {
	return Config{Bin: "bin", Sessions: 5000, Sources: 4, Dials: 64, Expiry: time.Hour, Settle: 5 * time.Second, Timeout: 10 * time.Minute}
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("fleetbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Bin, "bin", cfg.Bin, "directory holding dsd and gateway")
	fs.StringVar(&cfg.Addr, "addr", "", "use this running MQTT server instead of starting dsd and a gateway")
	pids := fs.String("pids", "", "with --addr: comma-separated pids whose RSS to measure")
	fs.StringVar(&cfg.Mosquitto, "mosquitto", "", "also measure this mosquitto binary (e.g. /usr/sbin/mosquitto)")
	fs.IntVar(&cfg.Sessions, "sessions", cfg.Sessions, "durable sessions (devices) to open")
	fs.IntVar(&cfg.Sources, "sources", cfg.Sources, "loopback source addresses 127.0.0.1 … 127.0.0.N for the clients")
	fs.IntVar(&cfg.Dials, "dials", cfg.Dials, "connection attempts in flight at most")
	fs.DurationVar(&cfg.Expiry, "expiry", cfg.Expiry, "Session Expiry Interval of the devices")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "idle time before RSS is read")
	fs.BoolVar(&cfg.Kill, "kill", false, "SIGKILL the gateway, publish to every device, reconnect them and count deliveries")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on each phase")
	fs.StringVar(&cfg.Pprof, "heapprofile", "", "start the gateway with --pprof and write its heap profile here once the fleet is idle")
	fs.StringVar(&cfg.DSDPprof, "dsdheapprofile", "", "start dsd with --pprof and write its heap profile here once the fleet is idle")
	fs.StringVar(&cfg.TempDir, "tmp", "", "directory for data and logs (default: the system's)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the data and logs")
	fs.BoolVar(&cfg.JSON, "json", false, "print JSON instead of Markdown")
	version := buildinfo.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *version {
		return cfg, errVersion
	}
	var err error
	if cfg.Pids, err = parsePids(*pids); err != nil {
		fmt.Fprintln(stderr, "fleetbench:", err)
		return cfg, err
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "fleetbench:", err)
		return cfg, err
	}
	return cfg, nil
}

func (c Config) validate() error {
	var errs []error
	if c.Sessions < 1 {
		errs = append(errs, fmt.Errorf("--sessions must be at least 1, got %d", c.Sessions))
	}
	if c.Sources < 1 || c.Sources > 254 {
		errs = append(errs, fmt.Errorf("--sources must be in 1..254, got %d", c.Sources))
	}
	if c.Dials < 1 {
		errs = append(errs, fmt.Errorf("--dials must be at least 1, got %d", c.Dials))
	}
	if c.Expiry < time.Second || c.Expiry > time.Duration(1<<32-1)*time.Second {
		errs = append(errs, fmt.Errorf("--expiry must be in 1s..4294967295s, got %v", c.Expiry))
	}
	if c.Addr != "" && c.Kill {
		errs = append(errs, errors.New("--kill needs the gateway started by fleetbench (no --addr)"))
	}
	return errors.Join(errs...)
}

func main() {
	os.Exit(mainErr(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, errVersion) {
		buildinfo.Fprint(stdout, "fleetbench")
		return 0
	}
	if err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	res, err := run(ctx, cfg, stderr)
	if err != nil {
		res.Error = err.Error()
	}
	if cfg.JSON {
		err = res.writeJSON(stdout)
	} else {
		err = res.writeMarkdown(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fleetbench:", err)
		return 1
	}
	if res.Error != "" {
		fmt.Fprintln(stderr, "fleetbench:", res.Error)
		return 1
	}
	return 0
}
