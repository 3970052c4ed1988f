// Command benchcmp runs the same tools/mqttload scenarios against Strata (dsd
// and one gateway) and against Debian's mosquitto with persistence on, in
// one run on one machine, and prints a table of both systems' figures and
// their ratio. `make bench` runs it.
//
//	go build -o bin/ ./dsd/cmd/dsd ./gateway/cmd/gateway ./tools/mqttload ./tools/benchcmp
//	bin/benchcmp --bin bin --out bin/bench-side-by-side.md
//	bin/benchcmp --only qos1,replay --runs 3
//
// For every scenario it starts dsd (empty data directory), a gateway and
// mosquitto (empty persistence directory, the configuration in
// childproc.MosquittoConf plus mosquittoLimits) as child processes on free 127.0.0.1 ports, runs
// bin/mqttload with identical flags against one system and then the other
// (the order alternates between runs, so slow drift of the machine falls on
// both), and stops them, so no scenario inherits another's data or
// sessions. Everything lives under one temporary directory, with the logs
// and every mqttload report. With --runs N the table gives the median and
// the range. Around each mqttload run benchcmp reads /proc to tell the CPU
// the system under test used from the CPU other processes used (a shared
// machine), and for Strata the gateway's and dsd's /metrics counters, which
// say where its time went; both are printed with the table.
//
// The table goes to stdout, and with --out also to a Markdown file (with the
// machine, versions and exact flags) for docs/benchmarks.md. Ctrl-C, SIGTERM
// or a failure stops every child process (SIGTERM, then SIGKILL after
// --stop-timeout) before benchcmp exits; the temporary directory is removed
// unless --keep is given or something failed. Exit status: 0, 1 when a
// system or a scenario failed (the table so far is printed), 2 for bad
// flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stratamq/strata/internal/buildinfo"
)

// Config is one benchcmp run; every field is a flag.
type Config struct {
	// Bin is the folder holding dsd, gateway and mqttload (--bin). Default bin.
	Bin string
	// Mosquitto is the mosquitto binary (--mosquitto). Default /usr/sbin/mosquitto.
	Mosquitto string
	// Out is a Markdown file to write the results to (--out). Default none.
	Out string
	// Runs is how many times each scenario runs on each system (--runs).
	// Default 1.
	Runs int
	// Only names the scenarios to run, comma separated (--only). Default all.
	Only string
	// Duration is the publish phase of the live scenarios (--duration).
	// Default 10s.
	Duration time.Duration
	// Inflight is mqttload's --inflight for every QoS 1 scenario
	// (--inflight). Default 8.
	Inflight int
	// Queued is the offline queue of the replay scenario (--queued).
	// Default 100000.
	Queued int
	// MaxOtherCPU, when > 0, repeats a scenario run (up to three attempts,
	// keeping the quietest) while processes other than benchcmp's used more
	// than this many cores during it (--max-other-cpu). Default 0: off.
	MaxOtherCPU float64
	// TempDir is where the run's temporary directory is made (--tmpdir).
	// Default: $TMPDIR or /tmp.
	TempDir string
	// Keep keeps the temporary directory with logs, data and reports (--keep).
	Keep bool
	// Profile, when set, is a folder where dsd and the gateway write a CPU
	// profile of each scenario run (--profile), named
	// <scenario run>-dsd.pprof and -gateway.pprof, for go tool pprof.
	Profile string
	// StrataVersion describes the Strata build in the results
	// (--strata-version). Default: the commit recorded in bin/dsd, or the
	// working tree's.
	StrataVersion string
	// StopTimeout bounds a child's graceful stop before SIGKILL
	// (--stop-timeout). Default 15s.
	StopTimeout time.Duration
}

func defaultConfig() Config {
	return Config{
		Bin:         "bin",
		Mosquitto:   "/usr/sbin/mosquitto",
		Runs:        1,
		Duration:    10 * time.Second,
		Inflight:    8,
		Queued:      100000,
		StopTimeout: 15 * time.Second,
	}
}

func (c *Config) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Bin, "bin", c.Bin, "folder with dsd, gateway and mqttload")
	fs.StringVar(&c.Mosquitto, "mosquitto", c.Mosquitto, "mosquitto binary")
	fs.StringVar(&c.Out, "out", c.Out, "also write the results as Markdown to this file")
	fs.IntVar(&c.Runs, "runs", c.Runs, "runs of each scenario on each system (median and range when > 1)")
	fs.StringVar(&c.Only, "only", c.Only, "comma-separated scenarios to run (default all: "+strings.Join(scenarioNames(), ",")+")")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "publish phase of each live scenario")
	fs.IntVar(&c.Inflight, "inflight", c.Inflight, "mqttload --inflight of the QoS 1 scenarios")
	fs.IntVar(&c.Queued, "queued", c.Queued, "messages queued for the replay scenario")
	fs.Float64Var(&c.MaxOtherCPU, "max-other-cpu", c.MaxOtherCPU, "repeat a run (at most 3 attempts) while other processes used more than this many cores; 0 = off")
	fs.StringVar(&c.TempDir, "tmpdir", c.TempDir, "where to make the temporary directory (default $TMPDIR or /tmp)")
	fs.BoolVar(&c.Keep, "keep", c.Keep, "keep the temporary directory (logs, data, mqttload reports)")
	fs.StringVar(&c.Profile, "profile", c.Profile, "folder for CPU profiles of dsd and the gateway, one pair per scenario run (default none)")
	fs.StringVar(&c.StrataVersion, "strata-version", c.StrataVersion, "describes the Strata build in the results (default: the commit bin/dsd was built from)")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", c.StopTimeout, "graceful stop bound of each child process before SIGKILL")
}

func (c *Config) validate() error {
	var errs []error
	if c.Runs < 1 || c.Inflight < 1 || c.Queued < 1 || c.Duration <= 0 || c.StopTimeout <= 0 {
		errs = append(errs, errors.New("--runs, --inflight, --queued, --duration and --stop-timeout must be > 0"))
	}
	if _, err := selectScenarios(c.Only); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func main() {
	os.Exit(mainErr(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("benchcmp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.registerFlags(fs)
	showVersion := buildinfo.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		buildinfo.Fprint(stdout, "benchcmp")
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "benchcmp: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "benchcmp:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C, a second one kills benchcmp; its children get
	// SIGKILL from their parent-death signal, except a mosquitto started as
	// root, which loses that signal when it drops its privileges.
	context.AfterFunc(ctx, stop)

	res, err := run(ctx, cfg, stderr)
	if res != nil {
		if werr := writeResults(stdout, cfg, res); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "benchcmp:", err)
		return 1
	}
	return 0
}

// run runs every scenario --runs times, each time on freshly started
// systems. The results so far are returned also on error.
func run(ctx context.Context, cfg Config, log io.Writer) (res *Results, err error) {
	scens, _ := selectScenarios(cfg.Only)
	for _, name := range []string{"dsd", "gateway", "mqttload"} {
		if _, err := os.Stat(filepath.Join(cfg.Bin, name)); err != nil {
			return nil, fmt.Errorf("%s missing: build with `go build -o %s/ ./dsd/cmd/dsd ./gateway/cmd/gateway ./tools/mqttload`", name, cfg.Bin)
		}
	}
	if _, err := os.Stat(cfg.Mosquitto); err != nil {
		return nil, fmt.Errorf("mosquitto: %w (apt-get install mosquitto)", err)
	}
	dir, err := os.MkdirTemp(cfg.TempDir, "benchcmp-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cfg.Keep || err != nil {
			fmt.Fprintf(log, "benchcmp: logs, data and reports kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	res = newResults(cfg, scens)
	res.Env = probeEnv(ctx, cfg)
	fmt.Fprintf(log, "benchcmp: %s; working in %s\n", res.Env.Summary(), dir)

	// Started as root, mosquitto runs as the user "mosquitto", which must be
	// able to reach its directory below this one.
	if err := os.Chmod(dir, 0o711); err != nil {
		return res, err
	}
	for r := range cfg.Runs {
		for _, sc := range scens {
			if err := runScenario(ctx, cfg, res, sc, r, filepath.Join(dir, fmt.Sprintf("%s-%d", sc.Name, r+1)), log); err != nil {
				return res, err
			}
		}
	}
	res.noteLoad()
	return res, nil
}

// runScenario starts both systems afresh (empty data directories) in dir,
// runs sc against each, Strata first in odd runs and mosquitto first in
// even ones, and stops them.
func runScenario(ctx context.Context, cfg Config, res *Results, sc *scenario, r int, dir string, log io.Writer) (err error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	procs := &group{log: log, stopTimeout: cfg.StopTimeout}
	defer func() {
		if serr := procs.stopAll(); serr != nil && err == nil {
			err = serr
		}
		res.noteMosquittoDB(filepath.Join(dir, "mosquitto", "mosquitto.db"))
	}()
	systems, err := startSystems(ctx, procs, cfg, dir)
	if err != nil {
		return err
	}
	if len(res.Systems) == 0 {
		for _, s := range systems {
			res.Systems = append(res.Systems, s.describe())
		}
	}
	var all []int
	for _, s := range systems {
		all = append(all, s.pids...)
	}
	if r%2 == 1 {
		systems[0], systems[1] = systems[1], systems[0]
	}
	for _, s := range systems {
		if err := procs.check(); err != nil {
			return err
		}
		if err := runOne(ctx, cfg, res, sc, s, all, filepath.Join(dir, s.Key), log); err != nil {
			return err
		}
	}
	return nil
}

// runOne runs scenario sc against s once, or with --max-other-cpu up to
// three times until other processes stayed below the limit (keeping the
// quietest attempt), and adds the figures to res.
func runOne(ctx context.Context, cfg Config, res *Results, sc *scenario, s *system, all []int, base string, log io.Writer) error {
	var (
		best     *loadReport
		bestUse  cpuUse
		bestIn   *internals
		scrapeOK = len(s.metrics) > 0
	)
	for attempt := 1; attempt <= 3; attempt++ {
		res.noteLoad()
		var mBefore counters
		if scrapeOK {
			var err error
			if mBefore, err = scrape(ctx, s.metrics); err != nil {
				fmt.Fprintf(log, "benchcmp: %s metrics: %v\n", s.Name, err)
				scrapeOK = false
			}
		}
		fmt.Fprintf(log, "benchcmp: %-8s %-9s ", sc.Name, s.Name)
		before, okB := sampleCPU(all)
		t0 := time.Now()
		var (
			rep     *loadReport
			loadCPU time.Duration
			err     error
		)
		if sc.run != nil {
			rep, loadCPU, err = sc.run(ctx, cfg, s.Addr, fmt.Sprintf("%s-%d", base, attempt))
		} else {
			rep, loadCPU, err = runLoad(ctx, filepath.Join(cfg.Bin, "mqttload"), sc.args(cfg, s.Addr), fmt.Sprintf("%s-%d", base, attempt))
		}
		after, okA := sampleCPU(all)
		var in *internals
		if scrapeOK && err == nil {
			if mAfter, serr := scrape(ctx, s.metrics); serr == nil {
				in = &internals{}
				in.add(mBefore, mAfter)
			}
		}
		if err != nil {
			fmt.Fprintln(log, "failed")
			return fmt.Errorf("%s on %s: %w", sc.Name, s.Name, err)
		}
		u := cpuUse{Server: -1, Other: -1}
		if okB && okA {
			u = use(before, after, s.pids, all, loadCPU)
		}
		fmt.Fprintf(log, "%s; CPU: server %.2f, mqttload %.2f, other processes %.2f cores; %.1f s\n",
			sc.brief(rep), u.Server, loadCPU.Seconds()/after.at.Sub(before.at).Seconds(), u.Other, time.Since(t0).Seconds())
		if best == nil || u.Other < bestUse.Other {
			best, bestUse, bestIn = rep, u, in
		}
		if cfg.MaxOtherCPU <= 0 || u.Other <= cfg.MaxOtherCPU {
			break
		}
		if attempt < 3 {
			fmt.Fprintf(log, "benchcmp: other processes used more than %.2f cores: again\n", cfg.MaxOtherCPU)
		}
	}
	res.add(sc, s.Key, best, bestUse)
	res.addInternals(sc, bestIn)
	return nil
}
